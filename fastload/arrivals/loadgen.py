"""LoadGen's Server scenario as an arrival source: one LoadGen test per child process.

LoadGen's issue controller and logger are process singletons (two tests in one process abort it),
which is why ``--loadgen-per-class`` runs one child per class. LoadGen stays the driver for every
Poisson shape: a rate schedule runs LoadGen at its peak rate and keeps each issued sample with
probability rate(t)/peak (Lewis-Shedler thinning); samples not kept are completed to LoadGen at
once and never reach the senders.
"""
from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastload.arrivals.draw import SampleDraw
from fastload.arrivals.pipe import ChildPipe, raise_priority
from fastload.contract.exits import WorkloadError
from fastload.contract.rates import RateSchedule
from fastload.contract.signals import tier_mix
from fastload.contract.verdicts import LoadGenVerdict
from fastload.contract.workload import MIN_CLASS_QPS, RequestClass, Workload
from fastload.memory import without_gc_pauses

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
    # A rate schedule: LoadGen runs at target_qps, the schedule's peak (times this test's share),
    # and samples are kept with probability rate(t) / peak. None: every sample is kept.
    schedule: RateSchedule | None = None
    # End at GO + duration_ms: LoadGen's last query is the first one scheduled past its minimum
    # duration, up to a few mean gaps of a slow class later; per-class tests and schedules cut
    # samples issued after the end (completed at once, never sent) so that all stop together.
    cut_at_end: bool = False
    # Every active class's tier and share, across all of a run's tests: what a shuffled
    # priority signal draws from.
    tier_mix: tuple[tuple[int, float], ...] = ()
    wants_completions = True  # LoadGen waits for every sample it issued

    def loadgen_seeds(self) -> tuple[int, int, int]:
        """Schedule, sample-index and QSL seeds; LoadGen defaults all to 0, which would give
        every per-class process the same arrival schedule."""
        rng = random.Random(f"{self.seed}:{self.label}")
        return rng.getrandbits(63), rng.getrandbits(63), rng.getrandbits(63)

    def keep(self) -> Callable[[float], bool] | None:
        """Whether to keep a sample issued t seconds after GO; None keeps every one."""
        end_s = self.duration_ms / 1000
        if self.schedule is None or self.schedule.is_constant:
            return (lambda t_s: t_s < end_s) if self.cut_at_end else None
        uniform = random.Random(f"{self.seed}:thin:{self.label}").random
        peak_qps, rate_at = self.schedule.peak_qps, self.schedule.rate_at
        return lambda t_s: uniform() * peak_qps < rate_at(t_s)  # rate_at is 0 past the end

    def planned_offsets_s(self) -> None:
        """LoadGen keeps its schedule to itself."""
        return None

    def verdict(self, ended: bool) -> LoadGenVerdict:
        """LoadGen's verdict, from the summary log its test wrote (unknown if it did not end)."""
        if not ended:
            return LoadGenVerdict(self.label, None)
        return read_loadgen_verdict(self.label, Path(self.log_dir) / "mlperf_log_summary.txt")


def run_loadgen(plan: ArrivalPlan, pipe: ChildPipe) -> None:
    """Child-process entry point: run one LoadGen test, forwarding issues and completions."""
    import mlperf_loadgen as lg

    draw = SampleDraw(plan.classes, plan.seed, plan.label, plan.tier_mix).draw
    keep, issue, monotonic_ns = plan.keep(), pipe.issue, time.monotonic_ns
    response = lg.QuerySampleResponse
    start_ns = 0

    def complete(ids) -> None:
        lg.QuerySamplesComplete([response(i, 0, 0) for i in ids])

    def issue_query(loadgen_ids: list[int], _indices: list[int]) -> None:
        if keep is not None:
            t_s = (monotonic_ns() - start_ns) / 1e9
            kept, dropped = [], []
            for loadgen_id in loadgen_ids:
                (kept if keep(t_s) else dropped).append(loadgen_id)
            if dropped:
                complete(dropped)
            loadgen_ids = kept
        if loadgen_ids:
            issue(loadgen_ids, draw)

    sut = lg.ConstructFastSUT(issue_query, lambda: None)
    qsl = lg.ConstructQSL(TOTAL_SAMPLES, PERF_SAMPLE_COUNT, lambda _: None, lambda _: None)
    settings = loadgen_settings(plan, lg)
    log_output = lg.LogOutputSettings()
    log_output.outdir = plan.log_dir
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    Path(plan.log_dir).mkdir(parents=True, exist_ok=True)

    raise_priority()
    go_ns = pipe.wait_for_go()
    if go_ns is None:
        return
    start_ns = go_ns
    threading.Thread(target=pipe.completions_forever, args=(complete,),
                     name="fastload-complete", daemon=True).start()
    with without_gc_pauses():  # a collection in the issue callback would delay issues
        lg.StartTestWithLogSettings(sut, qsl, settings, log_settings)
    pipe.ended()
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)


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
    schedule: RateSchedule,
    min_query_count: int,
    seed: int,
    output_dir: str,
    per_class: bool,
) -> list[ArrivalPlan]:
    """The LoadGen tests for a run: one at the total rate, or one per active class.

    One test suffices because giving each sample of a Poisson stream a class by an independent
    draw with probabilities p_i splits it into independent Poisson streams of rates total * p_i.
    Its latency target is the loosest active SLO (per-class attainment is fastload's own report).
    With a rate schedule the schedule alone sets the length: LoadGen runs at the peak rate for
    the schedule's duration with a minimum query count of 1, and samples are thinned and cut.
    """
    peak_qps, duration_ms = schedule.peak_qps, schedule.duration_ms
    classes = workload.active_classes(peak_qps)
    if not classes:
        raise WorkloadError(f"no class reaches {MIN_CLASS_QPS:g} QPS at {peak_qps:g} QPS")
    varying = not schedule.is_constant
    count = 1 if varying else min_query_count
    thinned = schedule if varying else None
    mix = tier_mix(classes)
    if not per_class:
        latency_ns = max(c.slo_ns for c in classes)
        return [ArrivalPlan("all", peak_qps, latency_ns, duration_ms, count, seed, output_dir,
                            classes, thinned, cut_at_end=varying, tier_mix=mix)]
    share = sum(c.fraction for c in classes)
    rates = [peak_qps * c.fraction / share for c in classes]
    counts = [math.ceil(count * c.fraction / share) for c in classes]
    common_ms = duration_ms if varying else per_class_duration_ms(duration_ms, counts, rates)
    return [
        ArrivalPlan(c.label, qps, c.slo_ns, common_ms, n, seed, str(Path(output_dir) / c.label),
                    (c,), thinned, cut_at_end=True, tier_mix=mix)
        for c, qps, n in zip(classes, rates, counts)
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


