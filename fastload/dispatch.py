"""The SUT's gRPC half: hands issued samples to a thread pool that fires Infer calls.

Open loop: a worker only encodes and *starts* a call (grpcio copies the bytes at call start and
returns a future), so the number of requests in flight is bounded by ``max_inflight``, never by
the pool size, and a stalled scheduler cannot slow LoadGen's schedule. Every sample is completed
towards LoadGen exactly once: on a response, a gRPC error, a timeout or a client-side failure.
"""
from __future__ import annotations

import json
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from multiprocessing.connection import wait as wait_for_messages
from typing import Mapping, Sequence

import grpc

from fastload._encode import RequestEncoder
from fastload._pb.scheduler_pb2 import InferResponse
from fastload.arrivals import ISSUE_RECORD, TAG_END, TAG_ISSUED, Issuer
from fastload.metrics import (STATUS_CLIENT_ERROR, STATUS_CLIENT_OVERLOAD, STATUS_OK, Record,
                              Recorder)

INFER_METHOD = "/scheduler.SchedulerService/Infer"
# How soon a stop request (SIGINT/SIGTERM) is noticed while no sample arrives.
STOP_POLL_S = 0.1
# The watchdog's period, and how long after its gRPC deadline a call is ended regardless.
WATCHDOG_PERIOD_S = 0.1
WATCHDOG_GRACE_S = 0.5


class Dispatcher:
    """Turns samples from LoadGen processes into Infer calls and records each outcome."""

    def __init__(
        self,
        channel: grpc.Channel,
        encoders: Mapping[str, RequestEncoder],
        recorder: Recorder,
        timeout_s: float,
        max_inflight: int,
        metadata: Sequence[tuple[str, str]] = (),
        workers: int = 4,
    ) -> None:
        # No serializers: the encoder's bytes go to the wire as they are.
        self._infer = channel.unary_unary(INFER_METHOD, _registered_method=True)
        self._encoders = encoders
        self._recorder = recorder
        self._timeout_s = timeout_s
        self._watchdog_after_ns = int((timeout_s + WATCHDOG_GRACE_S) * 1e9)
        self._metadata = tuple(metadata) or None
        self._max_inflight = max_inflight
        self._inflight = 0
        self._idle = threading.Condition()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastload-send")
        # Calls the watchdog ended; gRPC may never release them, see _expire_forever.
        self.forced_timeouts = 0
        self._sent: deque[tuple[int, Issuer, Record, grpc.Future]] = deque()
        self._closed = threading.Event()
        self._watchdog = threading.Thread(target=self._expire_forever, name="fastload-watchdog",
                                          daemon=True)
        self._watchdog.start()

    def serve(self, issuers: Sequence[Issuer], stop: threading.Event) -> bool:
        """Forward samples until every LoadGen process has ended or ``stop`` is set.

        Returns False if stopped early; calls in flight are left to ``drain``.
        """
        by_inbox = {issuer.inbox: issuer for issuer in issuers}
        while by_inbox:
            if stop.is_set():
                return False
            for inbox in wait_for_messages(list(by_inbox), timeout=STOP_POLL_S):
                issuer = by_inbox[inbox]
                try:
                    message = inbox.recv_bytes()
                except EOFError:  # the child died; its samples still complete below
                    del by_inbox[inbox]
                    continue
                if message[:1] == TAG_ISSUED:
                    self._hand_off(issuer, message)
                elif message[:1] == TAG_END:
                    issuer.ended = True
                    issuer.valid = _parse_end(message)
                    del by_inbox[inbox]
        return True

    def _hand_off(self, issuer: Issuer, message: bytes) -> None:
        for loadgen_id, issue_mono_ns, issue_wall_ns in ISSUE_RECORD.iter_unpack(
            memoryview(message)[1:]
        ):
            cls, model = issuer.draw.draw()
            record = self._recorder.open(issuer.plan.label, loadgen_id, cls, model,
                                         issue_mono_ns, issue_wall_ns)
            with self._idle:
                overloaded = self._inflight >= self._max_inflight
                if not overloaded:
                    self._inflight += 1
            if overloaded:
                self._finish(issuer, record, STATUS_CLIENT_OVERLOAD, False)
            else:
                self._pool.submit(self._send, issuer, record)

    def _send(self, issuer: Issuer, record: Record) -> None:
        """The one place a request is built and sent."""
        try:
            payload = self._encoders[record.model].encode(
                record.cls.tier, record.deadline_ns, record.model
            )
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
        code = call.code()
        if code is grpc.StatusCode.OK:
            try:
                success = InferResponse.FromString(call.result()).success
            except Exception:  # noqa: BLE001 - an undecodable response is a failed request
                self._finish(issuer, record, STATUS_CLIENT_ERROR, False)
                return
            self._finish(issuer, record, STATUS_OK, success)
        else:
            self._finish(issuer, record, code.name if code else STATUS_CLIENT_ERROR, False)

    def _finish(self, issuer: Issuer, record: Record, status: str, success: bool) -> None:
        """The one place a sample is recorded and completed towards LoadGen."""
        if self._recorder.close(record, time.monotonic_ns(), status, success):
            issuer.complete(record.loadgen_sample_id)

    def _release(self) -> None:
        """Free a slot once gRPC has let go of a call (and of its request bytes)."""
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


def _parse_end(message: bytes) -> bool | None:
    return json.loads(message[1:]).get("valid")
