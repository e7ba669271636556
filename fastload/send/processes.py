"""``--processes N``: N sender processes share the arrivals pipe; this process records.

One process is bound by one GIL. Each sender process runs its own Dispatcher (event loop,
channel, encoders) on the same arrivals pipe, which several readers may share (pipe.py), and
completes samples towards the arrival processes itself, so LoadGen hears of a completion as soon
as with one process. What this process gets is each finished sample as a fixed-size OUTCOME
record, forwarded in batches every FORWARD_PERIOD_S; it builds the Record the one Recorder
writes to the one CSV and summary, so there is still one place that records.
"""
from __future__ import annotations

import asyncio
import math
import signal
import struct
import sys
import threading
import time
from dataclasses import astuple
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any

import grpc

from fastload.arrivals.pipe import Arrivals, IssuedSample
from fastload.contract.load import ProcessClock, ProcessLoad
from fastload.contract.percentiles import Spread
from fastload.contract.signals import PrioritySignal
from fastload.memory import without_gc_pauses
from fastload.records.recorder import Recorder
from fastload.records.row import (
    STATUS_CLIENT_ERROR,
    STATUS_CLIENT_OVERLOAD,
    STATUS_EXPIRED,
    STATUS_NOT_SENT,
    STATUS_OK,
    Record,
)
from fastload.send.base import Transport
from fastload.send.dispatch import Dispatcher
from fastload.targets.base import Target

# sample id, source sample id, issue mono ns, issue Unix ns, send mono ns, done mono ns,
# issuer index, class index, model index, status index, success
OUTCOME = struct.Struct("<QQqqqqHHHH?")
# A message: its kind, then (OUTCOMES) the sender's calls in flight and OUTCOME records, or
# (ENDED) the sender's own load, then each arrival process whose ENDED record it read, with
# that process's load.
READY, OUTCOMES, ENDED = b"R", b"O", b"E"
IN_FLIGHT = struct.Struct("<I")
# CPU s, wall s, whether its loop lag was measured, and the lag's Spread (p50, p99, max in ms,
# count, p99 floor in ms).
SENDER_LOAD = struct.Struct("<dd?dddqd")
# Arrival process index, its CPU s and wall s since GO.
ARRIVALS_ENDED = struct.Struct("<Hdd")
# Every status a sample can end with, numbered for OUTCOME records.
STATUSES = tuple(dict.fromkeys((STATUS_OK, STATUS_EXPIRED, STATUS_CLIENT_OVERLOAD,
                                STATUS_CLIENT_ERROR, STATUS_NOT_SENT,
                                *(code.name for code in grpc.StatusCode))))
STATUS_INDEX = {status: i for i, status in enumerate(STATUSES)}
# How long a finished sample may wait in its sender before this process hears of it, and the
# most records in one message. Rows reach the CSV every FLUSH_PERIOD_S (0.25 s) anyway.
FORWARD_PERIOD_S = 0.02
OUTCOMES_PER_MESSAGE = 512
START_TIMEOUT_S = 60.0
STOP_POLL_S = 0.1
# Beyond their own drain, how long sender processes get to report and exit.
EXIT_GRACE_S = 5.0


class SenderProcesses:
    """The Sender for ``--processes N`` (N >= 2)."""

    def __init__(self, count: int, arrivals: Arrivals, transport: Transport,
                 target: Target, timeout_s: float, max_inflight: int, drain_s: float,
                 signal: PrioritySignal, context) -> None:
        self._arrivals = arrivals
        self._issuers = arrivals.issuers
        self._in_flight: dict[Connection, int] = {}  # senders still running, by their pipe
        self._names: dict[Connection, str] = {}
        self._reported: set[Connection] = set()  # senders that said ENDED before exiting
        self.died: list[str] = []  # senders that exited without ENDED
        self._loads: list[ProcessLoad] = []  # this process's, then each sender's from ENDED
        self._processes = []
        self._receivers = []
        self._recorder: Recorder | None = None  # the run's, from serve()
        for sender in range(count):
            receiver, sender_end = context.Pipe(duplex=False)
            process = context.Process(
                target=_sender_main, name=f"fastload-sender-{sender}", daemon=True,
                args=(sender, arrivals, transport, target, timeout_s,
                      math.ceil(max_inflight / count), drain_s, signal, sender_end))
            process.start()
            sender_end.close()
            self._processes.append(process)
            self._receivers.append(receiver)
            self._in_flight[receiver] = 0
            self._names[receiver] = process.name
        self._wait_ready(START_TIMEOUT_S)

    def _wait_ready(self, timeout_s: float) -> None:
        """Every sender has its channel and encoders; RuntimeError if one does not start."""
        deadline = time.monotonic() + timeout_s
        waiting = set(self._in_flight)
        while waiting:
            ready = wait_for_any(list(waiting), max(0.0, deadline - time.monotonic()))
            if not ready:
                raise RuntimeError(f"{len(waiting)} sender process(es) did not start "
                                   f"within {timeout_s:g} s")
            for receiver in ready:
                try:
                    message = receiver.recv_bytes()
                except EOFError:
                    raise RuntimeError("a sender process exited before it was ready") from None
                if message == READY:
                    waiting.discard(receiver)

    def in_flight(self) -> int:
        """Calls in flight in every sender, as of its last message (for the status line)."""
        return sum(self._in_flight.values())

    def serve(self, arrivals: Arrivals, recorder: Recorder, stop: threading.Event) -> bool:
        """Record what the senders report until every one has ended or ``stop`` is set."""
        self._recorder = recorder
        clock = ProcessClock()
        try:
            while self._in_flight:
                if stop.is_set():
                    return False
                self._receive(STOP_POLL_S)
            return True
        finally:
            self._loads.insert(0, clock.load("fastload", "recorder"))

    def loads(self) -> list[ProcessLoad]:
        """This process (recording) over ``serve``, and each sender process that ended."""
        return list(self._loads)

    def drain(self, timeout_s: float) -> bool:
        """After a stop: record until every sender has drained its calls and ended."""
        deadline = time.monotonic() + timeout_s + EXIT_GRACE_S
        while self._in_flight and time.monotonic() < deadline:
            self._receive(min(STOP_POLL_S, max(0.0, deadline - time.monotonic())))
        return not self._in_flight

    def _receive(self, timeout_s: float) -> None:
        for receiver in wait_for_any(list(self._in_flight), timeout_s):
            try:
                message = receiver.recv_bytes()
            except EOFError:
                del self._in_flight[receiver]
                if receiver not in self._reported:
                    self._lost(receiver)
                continue
            kind, body = message[:1], memoryview(message)[1:]
            if kind == OUTCOMES:
                self._in_flight[receiver] = IN_FLIGHT.unpack_from(body)[0]
                self._record(body[IN_FLIGHT.size:])
            elif kind == ENDED:
                self._reported.add(receiver)
                cpu_s, wall_s, lagged, *lag = SENDER_LOAD.unpack_from(body)
                self._loads.append(ProcessLoad(self._names[receiver], "sender", cpu_s, wall_s,
                                               Spread(*lag) if lagged else None))
                for index, cpu_s, wall_s in ARRIVALS_ENDED.iter_unpack(
                        body[SENDER_LOAD.size:]):
                    self._issuers[index].end(cpu_s, wall_s)

    def _lost(self, receiver: Connection) -> None:
        """A sender died with samples in flight that nothing will complete: LoadGen would wait
        for them for ever, so the arrival processes are stopped and the run ends; what the
        other senders finish is still recorded."""
        self.died.append(self._names[receiver])
        print(f"fastload: error: sender process {self._names[receiver]} died; stopping the "
              f"arrival processes", file=sys.stderr, flush=True)
        self._arrivals.stop(timeout_s=0)

    def _record(self, outcomes: memoryview) -> None:
        issuers, add = self._issuers, self._recorder.add_closed
        for (sample_id, source_id, issue_mono_ns, issue_wall_ns, send_mono_ns, done_mono_ns,
             issuer_index, class_index, model_index, status_index, success) \
                in OUTCOME.iter_unpack(outcomes):
            issuer = issuers[issuer_index]
            cls = issuer.plan.classes[class_index]
            record = Record(IssuedSample(sample_id, issuer, source_id, cls,
                                         cls.models[model_index][0], issue_mono_ns,
                                         issue_wall_ns, class_index, model_index))
            record.send_mono_ns = send_mono_ns
            record.finish(done_mono_ns, STATUSES[status_index], success)
            add(record)

    def close(self) -> None:
        for process in self._processes:
            process.join(EXIT_GRACE_S)
            if process.is_alive():
                process.terminate()
                process.join()
        for receiver in self._receivers:
            receiver.close()


class Forwarder:
    """A sender process's recorder: opens records like Recorder and forwards closed ones."""

    def __init__(self, parent: Connection, dispatcher: Dispatcher) -> None:
        self._parent = parent
        self._dispatcher = dispatcher
        # Open records with their samples, whose indices the OUTCOME record carries.
        self._open: dict[int, tuple[Record, IssuedSample]] = {}
        self._outcomes: list[bytes] = []

    def open(self, sample: IssuedSample) -> Record:
        record = Record(sample)
        self._open[sample.sample_id] = (record, sample)
        return record

    def close(self, record: Record, done_mono_ns: int, status: str, success: bool) -> bool:
        """Finish a record once, like Recorder.close, and forward it soon."""
        if not record.finish(done_mono_ns, status, success):
            return False
        self._outcomes.append(self._outcome(record))
        if len(self._outcomes) == 1:
            asyncio.get_running_loop().call_later(FORWARD_PERIOD_S, self.flush)
        elif len(self._outcomes) >= OUTCOMES_PER_MESSAGE:
            self.flush()
        return True

    def _outcome(self, record: Record) -> bytes:
        _, sample = self._open.pop(record.sample_id)
        return OUTCOME.pack(record.sample_id, record.loadgen_sample_id, record.issue_mono_ns,
                            record.issue_wall_ns, record.send_mono_ns, record.done_mono_ns,
                            sample.issuer.index, sample.class_index, sample.model_index,
                            STATUS_INDEX[record.status], record.success)

    def flush(self) -> None:
        if self._outcomes:
            self._parent.send_bytes(b"".join(
                (OUTCOMES, IN_FLIGHT.pack(self._dispatcher.in_flight()), *self._outcomes)))
            self._outcomes.clear()

    def finish(self) -> None:
        """Forward what is left, samples never completed as NOT_SENT (as Recorder.finish)."""
        for record, _ in list(self._open.values()):
            record.status = STATUS_NOT_SENT
            self._outcomes.append(self._outcome(record))
        self.flush()


def _sender_main(sender: int, arrivals: Arrivals, transport: Transport, target: Target,
                 timeout_s: float, max_inflight: int, drain_s: float, priority: PrioritySignal,
                 parent: Connection) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    dispatcher = Dispatcher(transport, target, timeout_s, max_inflight, sender,
                            name=f"fastload-sender-{sender}", signal=priority)
    forwarder = Forwarder(parent, dispatcher)
    parent.send_bytes(READY)
    # Never stopped from here: the parent stops the arrival processes, and the pipe's end
    # (every writer gone) ends serve().
    with without_gc_pauses():
        dispatcher.serve(arrivals, forwarder, threading.Event())
        dispatcher.drain(drain_s)
    forwarder.finish()
    [load] = dispatcher.loads()
    lag = load.loop_lag
    parent.send_bytes(b"".join((
        ENDED, SENDER_LOAD.pack(load.cpu_s, load.wall_s, lag is not None,
                                *(astuple(lag) if lag else (0, 0, 0, 0, 0))),
        *(ARRIVALS_ENDED.pack(issuer.index, issuer.load.cpu_s, issuer.load.wall_s)
          for issuer in arrivals.issuers if issuer.ended))))
    dispatcher.close()
