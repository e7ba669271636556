"""Arrival processes and the pipes between them and the senders: the part every source shares.

Arrivals are issued in child processes of their own, apart from the gRPC work: LoadGen's issue
thread must take the GIL to enter its Python callback, and when gRPC's threads share that GIL
the callback waits and Poisson bursts get smoothed (inter-arrival CV 0.91 instead of 1.00 at
300 QPS on a 2-core machine). A child (``loadgen.py``: LoadGen's Server scenario; ``timer.py``:
gamma and trace arrivals) only stamps each issue, gives it a class, a model and the tier a
shuffled priority signal sends (``contract.signals``), and writes one
fixed-size record to a pipe; the senders (the parent's event loop, or --processes sender
processes) read that pipe directly and write completions back. CLOCK_MONOTONIC is system-wide, so
the child's stamps compare directly with the parent's.

Wire protocol, raw pipes (multiprocessing only carries the descriptors to the children). Writes
are at most PIPE_BUF bytes and so atomic: several children share one arrivals pipe, and several
readers (sender processes) take whole records from it.
  children -> parent  ARRIVAL records (one pipe for all children):
                      (run sample id, source sample id, issue monotonic ns, issue Unix ns,
                      child index, kind, class index, model index, shuffled tier); kind READY,
                      ISSUED or ENDED.
                      ENDED carries, in the two id fields, the child's CPU ns and wall ns
                      since GO (its busy share, for the load certificate).
  parent -> child     GO once with the run's start (monotonic ns), then completed source sample
                      ids, 8 bytes each (one pipe each).

Run sample ids number the samples of a run 0, 1, ... in issue order across all children: a counter
in shared memory, taken under one lock together with the issue time stamps.
"""
from __future__ import annotations

import os
import select
import signal
import struct
import threading
import time
from array import array
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from typing import Any, Callable, NamedTuple, Protocol, Sequence

from fastload.contract.load import ProcessClock, ProcessLoad
from fastload.contract.workload import RequestClass

ARRIVAL = struct.Struct("<QQqqHHHHH")
KIND_READY, KIND_ISSUED, KIND_ENDED = 0, 1, 2
# Whole records per write, so that each write stays atomic.
ARRIVALS_PER_WRITE = select.PIPE_BUF // ARRIVAL.size
COMPLETION = struct.Struct("<Q")
GO = struct.Struct("<Qq")
GO_MARKER = 2**64 - 1
COMPLETIONS_PER_READ = 512


class Plan(Protocol):
    """What the parent needs of any source's plan; the child entry point gets the whole plan."""

    label: str
    classes: tuple[RequestClass, ...]
    # Whether the source waits for its samples to complete (LoadGen does; a timer does not, and
    # a write per sample to it would cost a syscall and a wake-up for nothing).
    wants_completions: bool

    def verdict(self, ended: bool) -> Any:
        """LoadGen's verdict on the plan's test, or None for a source without one."""

    def planned_offsets_s(self) -> Any:
        """When each arrival is due, in s from GO, indexed by its source id (a numpy array), for
        measuring issue lateness; None for a source that does not say (LoadGen)."""


ChildEntry = Callable[[Any, "ChildPipe"], None]


class SampleSequence:
    """Numbers samples 0, 1, ... in issue order across every arrival process of a run.

    The counter lives in shared memory; it is taken under a lock together with the issue time
    stamps, so run sample ids order exactly as issue times do, even across processes.
    """

    def __init__(self, context) -> None:
        self._next = context.RawValue("Q", 0)
        self._lock = context.Lock()

    def take(self, count: int) -> tuple[int, int, int]:
        """Reserve ``count`` ids; returns the first, and the issue time (monotonic, Unix ns)."""
        with self._lock:
            first = self._next.value
            self._next.value = first + count
            return first, time.monotonic_ns(), time.time_ns()


class ChildPipe:
    """A child's end of the pipes: READY, GO, issued samples, completions, ENDED."""

    def __init__(self, index: int, arrivals: Connection, completions: Connection,
                 sequence: SampleSequence) -> None:
        self._index = index
        self._out_fd, self._in_fd = arrivals.fileno(), completions.fileno()
        self._take = sequence.take
        # Keep the Connections alive: their descriptors are ours for the whole run.
        self._connections = (arrivals, completions)
        self._since_go: ProcessClock | None = None

    def wait_for_go(self) -> int | None:
        """Say READY, wait for GO; the run's start (monotonic ns), None if the parent quit."""
        self._announce(KIND_READY)
        go = os.read(self._in_fd, GO.size)
        if len(go) != GO.size:
            return None
        marker, start_mono_ns = GO.unpack(go)
        self._since_go = ProcessClock()
        return start_mono_ns if marker == GO_MARKER else None

    def issue(self, source_ids: Sequence[int], draw: Callable[[], tuple[int, int, int]]
              ) -> None:
        """Stamp, number and send samples issued together; ``draw`` gives each its (class
        index, model index, shuffled tier)."""
        first_id, mono_ns, wall_ns = self._take(len(source_ids))
        pack, index = ARRIVAL.pack, self._index
        for start in range(0, len(source_ids), ARRIVALS_PER_WRITE):
            os.write(self._out_fd, b"".join(
                pack(first_id + start + k, source_id, mono_ns, wall_ns, index, KIND_ISSUED,
                     *draw())
                for k, source_id in enumerate(source_ids[start:start + ARRIVALS_PER_WRITE])))

    def completions_forever(self, complete: Callable[[array], None]) -> None:
        """Hand completed source ids to ``complete`` as they come; run it on a thread.

        The parent closes this pipe only after the child has exited, so EOF here means the
        parent died (SIGKILL, OOM): nothing will complete the samples, so do not wait.
        """
        while ids := os.read(self._in_fd, COMPLETIONS_PER_READ * COMPLETION.size):
            complete(array("Q", ids))
        os._exit(1)

    def ended(self) -> None:
        """Say ENDED, with this process's CPU and wall time since GO."""
        self._announce(KIND_ENDED, *self._since_go.elapsed_ns())

    def _announce(self, kind: int, cpu_ns: int = 0, wall_ns: int = 0) -> None:
        os.write(self._out_fd, ARRIVAL.pack(cpu_ns, wall_ns, 0, 0, self._index, kind, 0, 0, 0))


def raise_priority(realtime: bool = False) -> None:
    """Let the issuing thread preempt the gRPC work when the cores are busy.

    A delayed issue releases its backlog as a burst, which inflates the inter-arrival CV;
    nice -10 needs root or CAP_SYS_NICE, and without them the child keeps the default priority.
    ``realtime`` asks for SCHED_FIFO (lowest real-time priority) first, for a process that
    sleeps until each arrival and must wake on time; the kernel's real-time throttling keeps 5 %
    of every second for everything else.
    """
    if realtime:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            return
        except (OSError, AttributeError):
            pass
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass


def _child_main(entry: ChildEntry, plan: Plan, index: int, arrivals: Connection,
                completions: Connection, sequence: SampleSequence) -> None:
    # Ctrl-C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    entry(plan, ChildPipe(index, arrivals, completions, sequence))


class IssuedSample(NamedTuple):
    sample_id: int  # run-wide, in issue order
    issuer: Issuer
    loadgen_id: int  # the source's own id (LoadGen's), to complete it with
    cls: RequestClass
    model: str
    issue_mono_ns: int
    issue_wall_ns: int
    # Where cls and model sit in the issuer's plan, as the arrival record gave them.
    class_index: int
    model_index: int
    shuffled_tier: int = 0  # the tier a shuffled priority signal sends


class Issuer:
    """The parent's handle on one arrival process and its completions pipe."""

    def __init__(self, plan: Plan, entry: ChildEntry, index: int, arrivals: Connection,
                 sequence: SampleSequence, context) -> None:
        child_in, completions = context.Pipe(duplex=False)
        self._attach(plan, index, completions)
        self.process = context.Process(
            target=_child_main, args=(entry, plan, index, arrivals, child_in, sequence),
            name=f"fastload-arrivals-{plan.label}", daemon=True,
        )
        self.process.start()
        child_in.close()

    def _attach(self, plan: Plan, index: int, completions: Connection) -> None:
        self.plan = plan
        self.index = index
        self._completions = completions
        self._completions_fd = completions.fileno()
        # complete() may come after stop(): a write to the closed descriptor could land in
        # whatever file reused its number.
        self._completions_lock = threading.Lock()
        self._wants_completions = plan.wants_completions
        self.ended = False
        self.load: ProcessLoad | None = None  # from its ENDED record

    def end(self, cpu_s: float, wall_s: float) -> None:
        """Its ENDED record was read: the test ended, after ``cpu_s`` of CPU in ``wall_s``."""
        self.ended = True
        self.load = ProcessLoad(f"arrivals {self.plan.label}", "arrivals", cpu_s, wall_s)

    def __getstate__(self) -> tuple[Plan, int, Connection]:
        """What a sender process needs (it is spawned, so the descriptor goes with it): the
        plan and the completions pipe, not the process."""
        return self.plan, self.index, self._completions

    def __setstate__(self, state: tuple[Plan, int, Connection]) -> None:
        self._attach(*state)
        self.process = None

    def go(self, start_mono_ns: int) -> None:
        self._write(GO.pack(GO_MARKER, start_mono_ns))

    def complete(self, source_id: int) -> None:
        """Tell the source one sample finished; safe from any thread or sender process (the
        write is atomic)."""
        if self._wants_completions:
            self._write(COMPLETION.pack(source_id))

    def _write(self, message: bytes) -> None:
        with self._completions_lock:
            if self._completions.closed:
                return
            try:
                os.write(self._completions_fd, message)
            except OSError:  # the child is gone; nothing is waiting for this any more
                pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Join the process; terminate it if it is still issuing after timeout_s."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        with self._completions_lock:
            self._completions.close()


class Arrivals:
    """A run's arrival processes and the one pipe their issued samples arrive on."""

    def __init__(self, plans: Sequence[Plan], entry: ChildEntry, context) -> None:
        self._reader, writer = context.Pipe(duplex=False)
        self._fd = self._reader.fileno()
        os.set_blocking(self._fd, False)  # readers wait on an event loop, never in read()
        # Held for the run: the children attach to its shared memory and lock when they start.
        self._sequence = SampleSequence(context)
        self.issuers = [Issuer(plan, entry, i, writer, self._sequence, context)
                        for i, plan in enumerate(plans)]
        # Only the children hold the write end now: EOF means every one of them has exited.
        writer.close()

    def __getstate__(self) -> tuple[Connection, list[Issuer]]:
        """A sender process's view (see Issuer.__getstate__): it reads the same pipe and
        completes samples itself; ``ended`` marks only the ENDED records it read."""
        return self._reader, self.issuers

    def __setstate__(self, state: tuple[Connection, list[Issuer]]) -> None:
        self._reader, self.issuers = state
        self._fd = self._reader.fileno()

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every child is ready to issue; RuntimeError naming one that is not."""
        deadline = time.monotonic() + timeout_s
        waiting = {issuer.process.sentinel: issuer for issuer in self.issuers}
        while waiting:
            ready = wait_for_any([self._reader, *waiting], max(0.0, deadline - time.monotonic()))
            exited = [waiting[s] for s in ready if s in waiting]
            if not ready or exited:
                issuer = exited[0] if exited else next(iter(waiting.values()))
                raise RuntimeError(f"arrival process {issuer.plan.label!r} did not start")
            record = os.read(self._fd, ARRIVAL.size) if self._reader in ready else b""
            if record:  # b"" at EOF: the children's exits show on their sentinels next
                index, kind = ARRIVAL.unpack(record)[4:6]
                if kind == KIND_READY:
                    waiting.pop(self.issuers[index].process.sentinel, None)

    def go(self, start_mono_ns: int) -> None:
        """Start every child: ``start_mono_ns`` is the run's time origin (schedules, cuts)."""
        for issuer in self.issuers:
            issuer.go(start_mono_ns)

    def fileno(self) -> int:
        """The arrivals pipe, for an event loop to watch (``read_ready`` once it is readable)."""
        return self._fd

    def read_ready(self, max_samples: int) -> list[IssuedSample] | None:
        """Up to ``max_samples`` issued samples waiting in the pipe (maybe none), or None once
        every child has exited; never blocks.

        Several readers, even in several processes, may share the pipe: every write is whole
        records of at most PIPE_BUF bytes, so a read of whole records returns whole records.
        """
        try:
            records = os.read(self._fd, max_samples * ARRIVAL.size)
        except BlockingIOError:  # another reader took them
            return []
        if not records:
            return None
        samples = []
        for sample_id, source_id, mono_ns, wall_ns, index, kind, class_index, model_index, \
                shuffled_tier in ARRIVAL.iter_unpack(records):
            issuer = self.issuers[index]
            if kind == KIND_ISSUED:
                cls = issuer.plan.classes[class_index]
                samples.append(IssuedSample(sample_id, issuer, source_id, cls,
                                            cls.models[model_index][0], mono_ns, wall_ns,
                                            class_index, model_index, shuffled_tier))
            elif kind == KIND_ENDED:
                issuer.end(sample_id / 1e9, source_id / 1e9)
        return samples

    def stop(self, timeout_s: float = 5.0) -> None:
        for issuer in self.issuers:
            issuer.stop(timeout_s)

    def close(self) -> None:
        self._reader.close()
