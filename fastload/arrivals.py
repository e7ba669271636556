"""LoadGen arrival processes, each in a process of its own, apart from the gRPC work.

LoadGen's issue thread must take the GIL to enter its Python callback; when gRPC's threads share
that GIL the callback waits and Poisson bursts get smoothed (inter-arrival CV 0.91 instead of 1.00
at 300 QPS on a 2-core machine). So each LoadGen test runs in a child process whose callback only
stamps the issue time, draws the sample's class and model and writes one fixed-size record to a
pipe; the parent's senders read that pipe directly and send completions back. CLOCK_MONOTONIC is
system-wide, so the child's timestamps compare directly with the parent's.

LoadGen's issue controller and logger are process singletons (two tests in one process abort it),
which is also why ``--loadgen-per-class`` runs one child per class.

Wire protocol, raw pipes (multiprocessing only carries the descriptors to the children). Writes
are at most PIPE_BUF bytes and so atomic: several children share one arrivals pipe, and several
parent threads read it, a whole record at a time.
  children -> parent  ARRIVAL records (one pipe for all children):
                      (run sample id, LoadGen sample id, issue monotonic ns, issue Unix ns,
                      child index, kind, class index, model index); kind READY, ISSUED or ENDED.
  parent -> child     GO once (with the monotonic ns after which samples are cut, see
                      ArrivalPlan.cut_at_end), then completed LoadGen sample ids, 8 bytes each
                      (one pipe each).

Run sample ids number the samples of a run 0, 1, ... in issue order across all children: a counter
in shared memory, taken under one lock together with the issue time stamps.
"""
from __future__ import annotations

import math
import os
import random
import select
import signal
import struct
import threading
import time
from array import array
from dataclasses import dataclass
from itertools import accumulate
from multiprocessing.connection import Connection, wait as wait_for_any
from pathlib import Path
from typing import NamedTuple

from fastload.memory import without_gc_pauses
from fastload.workload import MIN_CLASS_QPS, RequestClass, Workload, WorkloadError

ARRIVAL = struct.Struct("<QQqqHHHH")
KIND_READY, KIND_ISSUED, KIND_ENDED = 0, 1, 2
# Whole records per write, so that each write stays atomic.
ARRIVALS_PER_WRITE = select.PIPE_BUF // ARRIVAL.size
COMPLETION = struct.Struct("<Q")
GO = struct.Struct("<Qq")
GO_MARKER = 2**64 - 1
NEVER_NS = 2**63 - 1
COMPLETIONS_PER_READ = 512

# The spec's QSL: the sample library is never touched (requests carry random tensors).
TOTAL_SAMPLES = 1000
PERF_SAMPLE_COUNT = 500


@dataclass(frozen=True)
class ArrivalPlan:
    """One LoadGen Server-scenario test: its rate, latency target, seeds and log folder."""

    label: str
    target_qps: float
    target_latency_ns: int
    duration_ms: int
    min_query_count: int
    seed: int
    log_dir: str
    classes: tuple[RequestClass, ...]
    # Per-class tests end together: LoadGen's last query is the first one scheduled past its
    # minimum duration, up to a few mean gaps of a slow class later, so each test's samples
    # issued after GO + duration are completed at once and never sent.
    cut_at_end: bool = False

    def loadgen_seeds(self) -> tuple[int, int, int]:
        """Schedule, sample-index and QSL seeds; LoadGen defaults all to 0, which would give
        every per-class process the same arrival schedule."""
        rng = random.Random(f"{self.seed}:{self.label}")
        return rng.getrandbits(63), rng.getrandbits(63), rng.getrandbits(63)


def run_issuer(plan: ArrivalPlan, index: int, arrivals: Connection, completions: Connection,
               sequence: SampleSequence) -> None:
    """Child-process entry point: run one LoadGen test, forwarding issues and completions."""
    import mlperf_loadgen as lg

    # Ctrl-C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out_fd, in_fd = arrivals.fileno(), completions.fileno()
    pack = ARRIVAL.pack
    draw = SampleDraw(plan.classes, plan.seed, plan.label).draw
    take, monotonic_ns, response = sequence.take, time.monotonic_ns, lg.QuerySampleResponse
    end_ns = NEVER_NS

    def issue_query(loadgen_ids: list[int], _indices: list[int]) -> None:
        if monotonic_ns() > end_ns:
            lg.QuerySamplesComplete([response(i, 0, 0) for i in loadgen_ids])
            return
        first_id, mono_ns, wall_ns = take(len(loadgen_ids))
        for start in range(0, len(loadgen_ids), ARRIVALS_PER_WRITE):
            os.write(out_fd, b"".join(
                pack(first_id + start + k, loadgen_id, mono_ns, wall_ns, index, KIND_ISSUED,
                     *draw())
                for k, loadgen_id in enumerate(loadgen_ids[start:start + ARRIVALS_PER_WRITE])))

    def complete_forever() -> None:
        while ids := os.read(in_fd, COMPLETIONS_PER_READ * COMPLETION.size):
            lg.QuerySamplesComplete([response(i, 0, 0) for i in array("Q", ids)])
        # The parent closes this pipe only after this process has exited, so EOF here means the
        # parent died (SIGKILL, OOM): nothing will complete LoadGen's samples, so do not wait.
        os._exit(1)

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    qsl = lg.ConstructQSL(TOTAL_SAMPLES, PERF_SAMPLE_COUNT, lambda _: None, lambda _: None)
    settings = loadgen_settings(plan, lg)
    log_output = lg.LogOutputSettings()
    log_output.outdir = plan.log_dir
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    Path(plan.log_dir).mkdir(parents=True, exist_ok=True)

    _raise_priority()
    os.write(out_fd, pack(0, 0, 0, 0, index, KIND_READY, 0, 0))
    go = os.read(in_fd, GO.size)
    if len(go) != GO.size or GO.unpack(go)[0] != GO_MARKER:
        return
    end_ns = GO.unpack(go)[1]
    threading.Thread(target=complete_forever, name="fastload-complete", daemon=True).start()
    with without_gc_pauses():  # a collection in the issue callback would delay issues
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    os.write(out_fd, pack(0, 0, 0, 0, index, KIND_ENDED, 0, 0))
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)


class SampleSequence:
    """Numbers samples 0, 1, ... in issue order across every LoadGen process of a run.

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


def _raise_priority() -> None:
    """Let LoadGen's issue thread preempt the gRPC work when the cores are busy.

    A delayed issue thread releases its backlog as a burst, which inflates the inter-arrival CV;
    nice -10 needs root or CAP_SYS_NICE, and without them the child keeps the default priority.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)
    except OSError:
        pass


def loadgen_settings(plan: ArrivalPlan, lg) -> "lg.TestSettings":
    """LoadGen Server scenario, performance only, at the plan's rate and seeds."""
    settings = lg.TestSettings()
    settings.scenario = lg.TestScenario.Server
    settings.mode = lg.TestMode.PerformanceOnly
    settings.server_target_qps = plan.target_qps
    settings.server_target_latency_ns = plan.target_latency_ns
    settings.min_duration_ms = plan.duration_ms
    settings.min_query_count = max(1, plan.min_query_count)
    (settings.schedule_rng_seed, settings.sample_index_rng_seed,
     settings.qsl_rng_seed) = plan.loadgen_seeds()
    return settings


@dataclass(frozen=True)
class LoadGenVerdict:
    """LoadGen's verdict on one test and, when INVALID, its reasons in LoadGen's own words."""

    test: str
    valid: bool | None  # None: LoadGen wrote no verdict (the test did not end)
    reasons: tuple[str, ...] = ()


def read_loadgen_verdict(test: str, summary_path: Path) -> LoadGenVerdict:
    """Parse LoadGen's summary log: "Result is : INVALID", each constraint it marks NO (with
    the latency percentile it compared against its target, or its early-stopping estimate), and
    its recommendations."""
    try:
        lines = summary_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return LoadGenVerdict(test, None)
    fields: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    result = fields.get("Result is")
    if result is None:
        return LoadGenVerdict(test, None)
    if result == "VALID":
        return LoadGenVerdict(test, True)
    details = {
        "Performance constraints": _latency_detail(fields),
        "Early stopping": " ".join(b for b in _bullets(lines, "Early Stopping Result:")
                                    if b != "Run unsuccessful."),
    }
    reasons = []
    for key, value in fields.items():
        name, satisfied, _ = key.partition(" satisfied")
        if satisfied and value.upper().startswith("NO"):
            detail = details.get(name)
            reasons.append(f"{name.lower()} not satisfied" + (f" ({detail})" if detail else ""))
    reasons.extend(f"LoadGen recommends: {b}" for b in _bullets(lines, "Recommendations:"))
    return LoadGenVerdict(test, False, tuple(reasons))


def _bullets(lines: list[str], heading: str) -> list[str]:
    """The " * " items under a heading of LoadGen's summary, continuation lines joined."""
    items: list[str] = []
    inside = False
    for line in lines:
        if line.startswith(heading):
            inside = True
        elif inside and line.startswith(" * "):
            items.append(line[3:].strip())
        elif inside and line.startswith(" ") and line.strip() and items:
            items[-1] += " " + line.strip()
        elif inside:
            break
    return items


def _latency_detail(fields: dict[str, str]) -> str:
    """'99th percentile latency 2063.1 ms > target 2000 ms' where the log has both."""
    target = fields.get("target_latency (ns)", "")
    measured = fields.get("99.00 percentile latency (ns)", "")
    if not (target.isdigit() and measured.isdigit()):
        return ""
    return (f"99th percentile latency {int(measured) / 1e6:.1f} ms > target "
            f"{int(target) / 1e6:g} ms")


def plan_arrivals(
    workload: Workload,
    total_qps: float,
    duration_ms: int,
    min_query_count: int,
    seed: int,
    output_dir: str,
    per_class: bool,
) -> list[ArrivalPlan]:
    """The LoadGen tests for a run: one at the total rate, or one per active class.

    One test suffices because giving each sample of a Poisson stream a class by an independent
    draw with probabilities p_i splits it into independent Poisson streams of rates total * p_i.
    Its latency target is the loosest active SLO (per-class attainment is fastload's own report).
    """
    classes = workload.active_classes(total_qps)
    if not classes:
        raise WorkloadError(f"no class reaches {MIN_CLASS_QPS:g} QPS at --total-qps "
                            f"{total_qps:g}")
    if not per_class:
        latency_ns = max(c.slo_ns for c in classes)
        plan = ArrivalPlan("all", total_qps, latency_ns, duration_ms, min_query_count, seed,
                           output_dir, classes)
        return [plan]
    share = sum(c.fraction for c in classes)
    rates = [total_qps * c.fraction / share for c in classes]
    counts = [math.ceil(min_query_count * c.fraction / share) for c in classes]
    common_ms = per_class_duration_ms(duration_ms, counts, rates)
    return [
        ArrivalPlan(c.label, qps, c.slo_ns, common_ms, count, seed,
                    str(Path(output_dir) / c.label), (c,), cut_at_end=True)
        for c, qps, count in zip(classes, rates, counts)
    ]


def per_class_duration_ms(duration_ms: int, counts: list[int], rates: list[float]) -> int:
    """One duration for every per-class test, so that all of them issue over the same period.

    LoadGen runs a test until both its minimum duration and its minimum query count are met.
    Each class gets its share of the count; were the count to bind, the slow classes would run
    on after the others had stopped and the merged stream would lose its mix. So the common
    duration is long enough for every class to reach its count with a margin of four standard
    deviations of its Poisson count (then the count binds with probability < 1e-4).
    """
    needed_s = max((n + 4 * math.sqrt(n) + 4) / qps for n, qps in zip(counts, rates))
    return max(duration_ms, math.ceil(needed_s * 1000))


class SampleDraw:
    """Gives each issued sample its class and model by independent seeded draws.

    Draws happen in LoadGen's issue order, on its issue thread, so the same seed gives the same
    sequence. Model draws use one generator per class, so per-class sequences repeat across runs
    even when several LoadGen processes interleave.
    """

    def __init__(self, classes: tuple[RequestClass, ...], seed: int, label: str) -> None:
        self._class_rng = random.Random(f"{seed}:class:{label}")
        self._class_indices = range(len(classes))
        self._class_cum = list(accumulate(c.fraction for c in classes))
        self._models = [
            (range(len(c.models)), list(accumulate(p for _, p in c.models)),
             random.Random(f"{seed}:model:{c.label}"))
            for c in classes
        ]

    def draw(self) -> tuple[int, int]:
        """The next sample's (class index, model index within its class)."""
        cls = 0
        if len(self._class_indices) > 1:
            cls = self._class_rng.choices(self._class_indices, cum_weights=self._class_cum)[0]
        indices, cum_weights, rng = self._models[cls]
        model = 0 if len(indices) == 1 else rng.choices(indices, cum_weights=cum_weights)[0]
        return cls, model


class IssuedSample(NamedTuple):
    sample_id: int  # run-wide, in issue order
    issuer: Issuer
    loadgen_id: int
    cls: RequestClass
    model: str
    issue_mono_ns: int
    issue_wall_ns: int


class Issuer:
    """The parent's handle on one LoadGen child process and its completions pipe."""

    def __init__(self, plan: ArrivalPlan, index: int, arrivals: Connection,
                 sequence: SampleSequence, context) -> None:
        self.plan = plan
        child_in, completions = context.Pipe(duplex=False)
        self._completions = completions
        self._completions_fd = completions.fileno()
        # complete() comes from gRPC's threads, possibly after stop(): a write to the closed
        # descriptor could land in whatever file reused its number.
        self._completions_lock = threading.Lock()
        self.ended = False
        self.process = context.Process(
            target=run_issuer, args=(plan, index, arrivals, child_in, sequence),
            name=f"fastload-loadgen-{plan.label}", daemon=True,
        )
        self.process.start()
        child_in.close()

    def go(self, go_mono_ns: int) -> None:
        end_ns = go_mono_ns + self.plan.duration_ms * 1_000_000 if self.plan.cut_at_end \
            else NEVER_NS
        self._write(GO.pack(GO_MARKER, end_ns))

    def complete(self, loadgen_id: int) -> None:
        """Tell LoadGen one sample finished; safe from any thread (the write is atomic)."""
        self._write(COMPLETION.pack(loadgen_id))

    def _write(self, message: bytes) -> None:
        with self._completions_lock:
            if self._completions.closed:
                return
            try:
                os.write(self._completions_fd, message)
            except OSError:  # the child is gone; nothing is waiting for this any more
                pass

    def verdict(self) -> LoadGenVerdict:
        """LoadGen's verdict, from the summary log its test wrote (unknown if it did not end)."""
        if not self.ended:
            return LoadGenVerdict(self.plan.label, None)
        return read_loadgen_verdict(self.plan.label,
                                    Path(self.plan.log_dir) / "mlperf_log_summary.txt")

    def stop(self, timeout_s: float = 5.0) -> None:
        """Join the process; terminate it if it is still running LoadGen after timeout_s."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        with self._completions_lock:
            self._completions.close()


class Arrivals:
    """A run's LoadGen child processes and the one pipe their issued samples arrive on."""

    def __init__(self, plans: list[ArrivalPlan], context) -> None:
        self._reader, writer = context.Pipe(duplex=False)
        self._fd = self._reader.fileno()
        # Held for the run: the children attach to its shared memory and lock when they start.
        self._sequence = SampleSequence(context)
        self.issuers = [Issuer(plan, i, writer, self._sequence, context)
                        for i, plan in enumerate(plans)]
        # Only the children hold the write end now: EOF means every one of them has exited.
        writer.close()

    def wait_ready(self, timeout_s: float) -> None:
        """Wait until every child has LoadGen loaded; RuntimeError naming one that did not."""
        deadline = time.monotonic() + timeout_s
        waiting = {issuer.process.sentinel: issuer for issuer in self.issuers}
        while waiting:
            ready = wait_for_any([self._reader, *waiting], max(0.0, deadline - time.monotonic()))
            exited = [waiting[s] for s in ready if s in waiting]
            if not ready or exited:
                issuer = exited[0] if exited else next(iter(waiting.values()))
                raise RuntimeError(f"LoadGen process {issuer.plan.label!r} did not start")
            record = os.read(self._fd, ARRIVAL.size) if self._reader in ready else b""
            if record:  # b"" at EOF: the children's exits show on their sentinels next
                index, kind = ARRIVAL.unpack(record)[4:6]
                if kind == KIND_READY:
                    waiting.pop(self.issuers[index].process.sentinel, None)

    def go(self) -> None:
        go_mono_ns = time.monotonic_ns()
        for issuer in self.issuers:
            issuer.go(go_mono_ns)

    def receive(self) -> IssuedSample | None:
        """The next issued sample, or None once every child has exited.

        Blocks without the GIL; several threads may call it at once, each gets whole records.
        """
        while record := os.read(self._fd, ARRIVAL.size):
            sample_id, loadgen_id, mono_ns, wall_ns, index, kind, class_index, model_index = \
                ARRIVAL.unpack(record)
            issuer = self.issuers[index]
            if kind == KIND_ISSUED:
                cls = issuer.plan.classes[class_index]
                return IssuedSample(sample_id, issuer, loadgen_id, cls,
                                    cls.models[model_index][0], mono_ns, wall_ns)
            if kind == KIND_ENDED:
                issuer.ended = True
        return None

    def stop(self, timeout_s: float = 5.0) -> None:
        for issuer in self.issuers:
            issuer.stop(timeout_s)

    def close(self) -> None:
        self._reader.close()
