"""The SUT's gRPC half: a pool of senders that turn issued samples into calls to the target.

Each sender reads issued samples straight off the arrivals pipe (no hand-off between threads),
rewrites its encoder's request bytes and *starts* a call: grpcio copies the bytes at call start
and returns a future, so the number of requests in flight is bounded by ``max_inflight``, never
by the number of senders, and a stalled scheduler cannot slow LoadGen's schedule. Every sample is
completed towards LoadGen exactly once: on a response, a gRPC error, a timeout or a client-side
failure.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from functools import partial
from typing import Mapping, Sequence

import grpc

from fastload.arrivals.pipe import Arrivals, Issuer
from fastload.metrics import STATUS_CLIENT_ERROR, STATUS_CLIENT_OVERLOAD, Record, Recorder
from fastload.targets.base import Encode, Target

# How soon a stop request (SIGINT/SIGTERM) is noticed while no sample arrives.
STOP_POLL_S = 0.1
# The watchdog's period, and how long after its gRPC deadline a call is ended regardless.
WATCHDOG_PERIOD_S = 0.1
WATCHDOG_GRACE_S = 0.5


class Dispatcher:
    """Turns samples from arrival processes into calls and records each outcome."""

    def __init__(
        self,
        channel: grpc.Channel,
        target: Target,
        timeout_s: float,
        max_inflight: int,
        metadata: Sequence[tuple[str, str]] = (),
        senders: int = 4,
    ) -> None:
        # No serializers: the encoder's bytes go to the wire as they are.
        self._infer = channel.unary_unary(target.method, _registered_method=True)
        self._outcome = target.outcome
        # Encoders reuse their request bytes, so each sender thread gets its own.
        self._encoders = [target.encoders(i) for i in range(senders)]
        self._recorder: Recorder | None = None  # the run's, from serve()
        self._timeout_s = timeout_s
        self._watchdog_after_ns = int((timeout_s + WATCHDOG_GRACE_S) * 1e9)
        self._metadata = tuple(metadata) or None
        self._max_inflight = max_inflight
        self._inflight = 0
        self._idle = threading.Condition()
        # Four senders, not two: at 1000-1500 QPS on 2 cores the send-lag p99 was lower (median
        # of 5 runs at 1500 QPS: 6.6 ms vs 9.1 ms); future() spends about 40 % of its wall time
        # off the GIL, writing to the socket, so senders overlap.
        self._pool = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="fastload-send")
        # Calls the watchdog ended; gRPC may never release them, see _expire_forever.
        self.forced_timeouts = 0
        self._sent: deque[tuple[int, Issuer, Record, grpc.Future]] = deque()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._expire_forever, name="fastload-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def serve(self, arrivals: Arrivals, recorder: Recorder, stop: threading.Event) -> bool:
        """Send samples until every arrival process has ended or ``stop`` is set; every sample
        is recorded with ``recorder``.

        Returns False if stopped early: the caller then stops the LoadGen processes, which ends
        the senders; calls in flight are left to ``drain``.
        """
        self._recorder = recorder
        senders = {self._pool.submit(self._send_arrivals, arrivals, encoders)
                   for encoders in self._encoders}
        while senders:
            if stop.is_set():
                return False
            done, senders = wait(senders, timeout=STOP_POLL_S, return_when=FIRST_EXCEPTION)
            for sender in done:
                sender.result()  # a sender's bug surfaces here instead of hanging the run
        return True

    def _send_arrivals(self, arrivals: Arrivals, encoders: Mapping[str, Encode]) -> None:
        """One sender: read issued samples until the pipe closes, send each at once."""
        receive, open_record = arrivals.receive, self._recorder.open
        while sample := receive():
            record = open_record(sample)
            with self._idle:
                overloaded = self._inflight >= self._max_inflight
                if not overloaded:
                    self._inflight += 1
            if overloaded:
                self._finish(sample.issuer, record, STATUS_CLIENT_OVERLOAD, False)
            else:
                self._send(sample.issuer, record, encoders[record.model])

    def _send(self, issuer: Issuer, record: Record, encode: Encode) -> None:
        """The one place a request is built and sent."""
        try:
            payload = encode(record.cls.tier, record.deadline_ns)
            record.send_mono_ns = time.monotonic_ns()
            call = self._infer.future(payload, timeout=self._timeout_s, metadata=self._metadata)
        except Exception:  # noqa: BLE001 - any client-side failure still completes the sample
            self._finish(issuer, record, STATUS_CLIENT_ERROR, False)
            self._release()
            return
        call.add_done_callback(partial(self._on_done, issuer, record))
        self._sent.append((record.send_mono_ns + self._watchdog_after_ns, issuer, record, call))

    def _expire_forever(self) -> None:
        """Time out calls gRPC has not ended by their deadline plus a grace period.

        Measured: with the scheduler process frozen (SIGSTOP) while its socket is full, some
        grpcio calls never report their deadline until the peer wakes, and LoadGen would wait
        for them for ever. Calls are checked in send order; the timeout is the same for all.
        """
        while not self._closed.wait(WATCHDOG_PERIOD_S):
            now_ns = time.monotonic_ns()
            while self._sent and self._sent[0][0] <= now_ns:
                _, issuer, record, call = self._sent.popleft()
                if not record.status:
                    self.forced_timeouts += 1
                    call.cancel()
                    self._finish(issuer, record, grpc.StatusCode.DEADLINE_EXCEEDED.name, False)

    def _on_done(self, issuer: Issuer, record: Record, call: grpc.Future) -> None:
        try:
            self._record_outcome(issuer, record, call)
        finally:
            self._release()

    def _record_outcome(self, issuer: Issuer, record: Record, call: grpc.Future) -> None:
        try:
            status, success = self._outcome(call)
        except Exception:  # noqa: BLE001 - an undecodable response is a failed request
            status, success = STATUS_CLIENT_ERROR, False
        self._finish(issuer, record, status, success)

    def _finish(self, issuer: Issuer, record: Record, status: str, success: bool) -> None:
        """The one place a sample is recorded and completed towards LoadGen."""
        if self._recorder.close(record, time.monotonic_ns(), status, success):
            issuer.complete(record.loadgen_sample_id)

    def _release(self) -> None:
        """Free a slot once gRPC has let go of a call (and of its copy of the request)."""
        with self._idle:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Wait for calls in flight; True if none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout_s)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._closed.set()
        self._watchdog.join()

