"""LoadGen arrival processes, each in a process of its own, apart from the gRPC work.

LoadGen's issue thread must take the GIL to enter its Python callback; when gRPC's threads share
that GIL the callback waits and Poisson bursts get smoothed (inter-arrival CV 0.91 instead of 1.00
at 300 QPS on a 2-core machine). So each LoadGen test runs in a child process whose callback only
stamps the issue time and writes the sample to a pipe; the parent does the gRPC work and sends
completions back. CLOCK_MONOTONIC is system-wide, so the child's timestamps compare directly with
the parent's.

LoadGen's issue controller and logger are process singletons (two tests in one process abort it),
which is also why ``--loadgen-per-class`` runs one child per class.

Wire protocol (multiprocessing Connection messages, one tag byte then a payload):
  child -> parent   b"R"                          ready; waiting for b"G"
                    b"I" + n * ISSUE_RECORD      samples issued (sample id, monotonic ns, Unix ns)
                    b"E" + JSON                  test finished: {"valid": bool | None}
  parent -> child   b"G"                          start the test
                    b"C" + n * uint64            samples completed
"""
from __future__ import annotations

import json
import os
import random
import signal
import struct
import threading
import time
from array import array
from dataclasses import dataclass
from itertools import accumulate
from multiprocessing.connection import Connection
from pathlib import Path

from fastload.workload import RequestClass, Workload

ISSUE_RECORD = struct.Struct("<Qqq")

# The spec's QSL: the sample library is never touched (requests carry random tensors).
TOTAL_SAMPLES = 1000
PERF_SAMPLE_COUNT = 500

TAG_READY, TAG_GO, TAG_ISSUED, TAG_COMPLETED, TAG_END = b"R", b"G", b"I", b"C", b"E"


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

    def loadgen_seeds(self) -> tuple[int, int, int]:
        """Schedule, sample-index and QSL seeds; LoadGen defaults all to 0, which would give
        every per-class process the same arrival schedule."""
        rng = random.Random(f"{self.seed}:{self.label}")
        return rng.getrandbits(63), rng.getrandbits(63), rng.getrandbits(63)


def run_issuer(plan: ArrivalPlan, to_parent: Connection, from_parent: Connection) -> None:
    """Child-process entry point: run one LoadGen test, forwarding issues and completions."""
    import mlperf_loadgen as lg

    # Ctrl-C reaches the whole process group; the parent decides when this process stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    send_lock = threading.Lock()
    monotonic_ns, time_ns, pack = time.monotonic_ns, time.time_ns, ISSUE_RECORD.pack

    def issue_query(sample_ids: list[int], _indices: list[int]) -> None:
        mono_ns, wall_ns = monotonic_ns(), time_ns()
        message = TAG_ISSUED + b"".join(pack(i, mono_ns, wall_ns) for i in sample_ids)
        with send_lock:
            to_parent.send_bytes(message)

    def complete_forever() -> None:
        while True:
            message = from_parent.recv_bytes()
            ids = array("Q", message[1:])
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])

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
    to_parent.send_bytes(TAG_READY)
    if from_parent.recv_bytes() != TAG_GO:
        return
    threading.Thread(target=complete_forever, name="fastload-complete", daemon=True).start()
    lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    valid = loadgen_result_valid(Path(plan.log_dir) / "mlperf_log_summary.txt")
    with send_lock:
        to_parent.send_bytes(TAG_END + json.dumps({"valid": valid}).encode())
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)


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


def loadgen_result_valid(summary_path: Path) -> bool | None:
    """LoadGen's own verdict from its summary log ("Result is : VALID"), None if unreadable."""
    try:
        text = summary_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Result is"):
            return line.split(":", 1)[1].strip() == "VALID"
    return None


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
        raise ValueError(f"no class reaches 0.01 QPS at --total-qps {total_qps:g}")
    if not per_class:
        latency_ns = max(c.slo_ns for c in classes)
        plan = ArrivalPlan("all", total_qps, latency_ns, duration_ms, min_query_count, seed,
                           output_dir, classes)
        return [plan]
    share = sum(c.fraction for c in classes)
    return [
        ArrivalPlan(c.label, total_qps * c.fraction / share, c.slo_ns, duration_ms,
                    min_query_count, seed, str(Path(output_dir) / c.label), (c,))
        for c in classes
    ]


class SampleDraw:
    """Gives each issued sample its class and model by independent seeded draws.

    Draws happen in issue order on one thread, so the same seed gives the same sequence.
    Model draws use one generator per class, so per-class sequences repeat across runs even
    when several LoadGen processes interleave.
    """

    def __init__(self, classes: tuple[RequestClass, ...], seed: int, label: str) -> None:
        self._classes = classes
        self._class_rng = random.Random(f"{seed}:class:{label}")
        self._class_cum = list(accumulate(c.fraction for c in classes))
        self._models = {
            c: ([m for m, _ in c.models], list(accumulate(p for _, p in c.models)),
                random.Random(f"{seed}:model:{c.label}"))
            for c in classes
        }

    def draw(self) -> tuple[RequestClass, str]:
        cls = self._classes[0]
        if len(self._classes) > 1:
            cls = self._class_rng.choices(self._classes, cum_weights=self._class_cum)[0]
        names, cum_weights, rng = self._models[cls]
        model = names[0] if len(names) == 1 else rng.choices(names, cum_weights=cum_weights)[0]
        return cls, model


class Issuer:
    """The parent's handle on one LoadGen child process and its two pipes."""

    def __init__(self, plan: ArrivalPlan, context) -> None:
        self.plan = plan
        self.inbox, child_out = context.Pipe(duplex=False)
        child_in, self._outbox = context.Pipe(duplex=False)
        self._lock = threading.Lock()
        self.draw = SampleDraw(plan.classes, plan.seed, plan.label)
        self.ended = False
        self.valid: bool | None = None
        self.process = context.Process(
            target=run_issuer, args=(plan, child_out, child_in),
            name=f"fastload-loadgen-{plan.label}", daemon=True,
        )
        self.process.start()
        child_out.close()
        child_in.close()

    def wait_ready(self, timeout_s: float) -> None:
        if not self.inbox.poll(timeout_s) or self.inbox.recv_bytes() != TAG_READY:
            raise RuntimeError(f"LoadGen process {self.plan.label!r} did not start")

    def go(self) -> None:
        self._send(TAG_GO)

    def complete(self, sample_id: int) -> None:
        """Tell LoadGen one sample finished; called from gRPC's completion threads."""
        self._send(TAG_COMPLETED + sample_id.to_bytes(8, "little"))

    def _send(self, message: bytes) -> None:
        with self._lock:
            try:
                self._outbox.send_bytes(message)
            except OSError:  # the child is gone; nothing is waiting for this any more
                pass

    def stop(self, timeout_s: float = 5.0) -> None:
        """Join the process; terminate it if it is still running LoadGen after timeout_s."""
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout_s)
        self.inbox.close()
        self._outbox.close()
