"""The SUT's gRPC half: one event loop that turns issued samples into calls to the target.

The loop watches the arrivals pipe; when samples are there it reads them all, rewrites each
one's request bytes and *starts* its call (over grpcio, or fastload's own HTTP/2: ``Calls``), so
the number of requests in flight is bounded by ``max_inflight`` and a stalled scheduler cannot
slow LoadGen's schedule.
One thread and asyncio, not a pool of threads blocking in ``future()``: measured on 2 cores,
grpc.aio spends 0.87-0.93x the CPU per request of sync ``future()`` from one thread, and
handing samples to four sender threads cost 1.08-1.19x; one loop also means no locks between
senders. Every sample is completed towards LoadGen exactly once: on a response, a gRPC error, a
timeout or a client-side failure.
"""
from __future__ import annotations

import asyncio
import select
import threading
import time
from collections import deque
from functools import partial
from typing import Mapping

import grpc

from fastload.arrivals.pipe import Arrivals, Issuer
from fastload.contract.load import ProcessClock, ProcessLoad
from fastload.contract.signals import PrioritySignal
from fastload.records.row import STATUS_CLIENT_ERROR, STATUS_CLIENT_OVERLOAD, Record
from fastload.send.base import Call, Records, Transport
from fastload.send.loop_lag import LoopLag
from fastload.targets._tensor import DEFAULT_POOL_SIZE
from fastload.targets.base import Encode, Target

# How soon a stop request (SIGINT/SIGTERM) is noticed while no sample arrives.
STOP_POLL_S = 0.1
# The watchdog's period, and how long after its gRPC deadline a call is ended regardless.
WATCHDOG_PERIOD_S = 0.1
WATCHDOG_GRACE_S = 0.5
# Samples sent per turn of the loop, at most an encoder's pool: grpc.aio copies a request's bytes
# only when its call's task first runs, on the loop's next turn (the h2 transport sends or
# copies them before ``start`` returns), and an encoder rewrites a request's bytes pool-size
# calls later. A later turn handles what is left in the pipe.
SAMPLES_PER_TURN = DEFAULT_POOL_SIZE

class Dispatcher:
    """Turns samples from arrival processes into calls and records each outcome (a Sender; a
    sender process runs one too, recording into its Forwarder).

    ``transport`` makes the dispatcher's own event loop, which runs only inside ``serve``,
    ``drain`` and ``close``, and the calls on it.
    """

    def __init__(
        self,
        transport: Transport,
        target: Target,
        timeout_s: float,
        max_inflight: int,
        sender: int = 0,
        name: str = "fastload",
        signal: PrioritySignal = PrioritySignal(),
    ) -> None:
        self._name = name
        self._signal = signal
        self._loop = transport.new_loop()
        self._calls = self._loop.run_until_complete(transport.open_calls(target.method))
        self._outcome = target.outcome
        self._encoders: Mapping[str, Encode] = target.encoders(sender)
        self._records: Records | None = None  # from serve()
        self._watchdog_after_ns = int((timeout_s + WATCHDOG_GRACE_S) * 1e9)
        self._max_inflight = max_inflight
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.died: list[str] = []  # this process cannot lose a sender: it is the sender
        self._sent: deque[tuple[int, Issuer, Record, Call]] = deque()
        self._loop_lag = LoopLag()
        self._watchdog_due_s = 0.0
        self._schedule_watchdog()
        self._load: ProcessLoad | None = None  # from serve()

    def serve(self, arrivals: Arrivals, records: Records, stop: threading.Event) -> bool:
        """Send samples until every arrival process has ended or ``stop`` is set; every sample
        is recorded in ``records``.

        Returns False if stopped early: the caller then stops the arrival processes; calls in
        flight are left to ``drain``.
        """
        self._records = records
        clock = ProcessClock()
        self._loop_lag.measuring = True
        try:
            return self._loop.run_until_complete(self._serve(arrivals, stop))
        finally:
            self._loop_lag.measuring = False
            self._load = clock.load(self._name, "sender", self._loop_lag.spread())

    async def _serve(self, arrivals: Arrivals, stop: threading.Event) -> bool:
        ended = self._loop.create_future()
        # The loop watches the pipe through an epoll of its own, registered EPOLLEXCLUSIVE: when
        # sender processes share the pipe, a sample then wakes one of them, not all.
        watch = select.epoll()
        watch.register(arrivals.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
        self._loop.add_reader(watch.fileno(), self._on_arrivals, arrivals, ended, watch)
        try:
            while not ended.done():
                if stop.is_set():
                    return False
                await asyncio.wait((ended,), timeout=STOP_POLL_S)
            ended.result()  # a bug in the reader surfaces here instead of hanging the run
            return True
        finally:
            self._loop.remove_reader(watch.fileno())
            watch.close()

    def _on_arrivals(self, arrivals: Arrivals, ended: asyncio.Future,
                     watch: select.epoll) -> None:
        """Send every sample waiting in the pipe, each at once."""
        try:
            samples = arrivals.read_ready(SAMPLES_PER_TURN)
            if samples is None:
                self._loop.remove_reader(watch.fileno())
                ended.set_result(None)
                return
            open_record, encoders, tier = self._records.open, self._encoders, self._signal.tier
            for sample in samples:
                record = open_record(sample)
                if self._inflight >= self._max_inflight:
                    self._finish(sample.issuer, record, STATUS_CLIENT_OVERLOAD, False)
                else:
                    self._send(sample.issuer, record, encoders[record.model],
                               tier(sample.cls.tier, sample.shuffled_tier))
        except BaseException as exc:  # noqa: BLE001 - handed to serve(), which raises it
            self._loop.remove_reader(watch.fileno())
            if not ended.done():
                ended.set_exception(exc)

    def _send(self, issuer: Issuer, record: Record, encode: Encode, tier: int) -> None:
        """The one place a request is built and sent, carrying ``tier`` (the priority
        signal's; the record keeps its own)."""
        self._inflight += 1
        self._idle.clear()
        try:
            payload = encode(tier, record.deadline_ns)
            record.send_mono_ns = time.monotonic_ns()
            call = self._calls.start(payload, partial(self._ended, issuer, record))
        except Exception:  # noqa: BLE001 - any client-side failure still completes the sample
            if not record.status:  # unless the transport ended the call before it failed
                self._ended(issuer, record, None, "", None)
            return
        self._sent.append((record.send_mono_ns + self._watchdog_after_ns, issuer, record, call))

    def _ended(self, issuer: Issuer, record: Record, code: grpc.StatusCode | None,
               details: str, response: bytes | None) -> None:
        """A call's end, from its transport (``code`` None: it failed on the client)."""
        try:
            status, success = (STATUS_CLIENT_ERROR, False) if code is None \
                else self._outcome(code, details, response)
        except Exception:  # noqa: BLE001 - an undecodable response is a failed request
            status, success = STATUS_CLIENT_ERROR, False
        self._finish(issuer, record, status, success)
        self._inflight -= 1
        if self._inflight == 0:
            self._idle.set()

    def _expire(self) -> None:
        """Time out calls gRPC has not ended by their deadline plus a grace period.

        Measured: with the scheduler process frozen (SIGSTOP) while its socket is full, some
        grpcio calls never report their deadline until the peer wakes, and LoadGen would wait
        for them for ever (the h2 transport ends calls at their deadline itself). Calls are
        checked in send order; the timeout is the same for all.
        How late this callback runs is the loop's lag (``loop_lag``).
        """
        self._loop_lag.observe(time.monotonic() - self._watchdog_due_s)
        now_ns = time.monotonic_ns()
        while self._sent and self._sent[0][0] <= now_ns:
            _, issuer, record, call = self._sent.popleft()
            if not record.status:
                self._finish(issuer, record, grpc.StatusCode.DEADLINE_EXCEEDED.name, False)
                call.cancel()
        self._schedule_watchdog()

    def _schedule_watchdog(self) -> None:
        # The clock, not the loop's: uvloop's loop.time() is libuv's, in whole milliseconds.
        self._watchdog_due_s = time.monotonic() + WATCHDOG_PERIOD_S
        self._loop.call_later(WATCHDOG_PERIOD_S, self._expire)

    def _finish(self, issuer: Issuer, record: Record, status: str, success: bool) -> None:
        """The one place a sample is recorded and completed towards LoadGen."""
        if self._records.close(record, time.monotonic_ns(), status, success):
            issuer.complete(record.loadgen_sample_id)

    def in_flight(self) -> int:
        """Calls started and not yet ended."""
        return self._inflight

    def loads(self) -> list[ProcessLoad]:
        """This process while it sent: its CPU and its loop's lag (none before ``serve``)."""
        return [self._load] if self._load is not None else []

    def drain(self, timeout_s: float) -> bool:
        """Wait for calls in flight; True if none is left."""
        try:
            self._loop.run_until_complete(asyncio.wait_for(self._idle.wait(), timeout_s))
        except asyncio.TimeoutError:
            return False
        return True

    def close(self) -> None:
        """Close the calls' connections (cancelling any call still in flight) and the loop."""
        self._loop.run_until_complete(self._calls.close())
        self._loop.close()
