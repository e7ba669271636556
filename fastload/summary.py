"""Run statistics in bounded memory, the summary table and its JSON twin.

Statistics are kept per class as records stream past (counts, issue span, an HdrHistogram of
latencies), never as a list of samples, so a soak test of a day costs what a minute does.
Percentiles are HdrHistogram's nearest-rank values with 3 significant digits: within 0.1 % of
``numpy.percentile(latencies, q, method="inverted_cdf")`` over the CSV's rows.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from hdrh.histogram import HdrHistogram

from fastload.contract.rates import Phase
from fastload.contract.verdicts import LoadGenVerdict
from fastload.contract.workload import RequestClass
from fastload.metrics import ANSWERED, Record

# Latencies are recorded in µs from 1 µs to a day, 3 significant digits (~200 KB a class).
_HISTOGRAM_RANGE_US = (1, 86_400_000_000, 3)
PERCENTILES = (50, 95, 99)


def nearest_rank(n: int, q: int) -> int:
    """The 1-based rank of the q-th percentile of n values, nearest-rank method: the smallest
    value with at least q % of the values at or below it is the ceil(q * n / 100)-th (at least
    the first); computed in integers, so no float rounding moves it."""
    return max(1, -(-q * n // 100))


class ClassStats:
    """What the summary needs of one class, updated record by record."""

    __slots__ = ("count", "met", "errors", "first_issue_ns", "last_issue_ns", "latency_us")

    def __init__(self) -> None:
        self.count = self.met = self.errors = 0
        self.first_issue_ns = math.inf
        self.last_issue_ns = -math.inf
        self.latency_us = HdrHistogram(*_HISTOGRAM_RANGE_US)

    def add(self, record: Record) -> None:
        self.count += 1
        issue_ns = record.issue_mono_ns
        if issue_ns < self.first_issue_ns:
            self.first_issue_ns = issue_ns
        if issue_ns > self.last_issue_ns:
            self.last_issue_ns = issue_ns
        if record.status in ANSWERED:
            # Clamped into the histogram's range: a latency beyond a day counts as a day.
            self.latency_us.record_value(
                min(max(record.latency_ns // 1000, 1), _HISTOGRAM_RANGE_US[1]))
            self.met += record.slo_met
        else:
            self.errors += 1

    def merge(self, other: ClassStats) -> None:
        self.count += other.count
        self.met += other.met
        self.errors += other.errors
        self.first_issue_ns = min(self.first_issue_ns, other.first_issue_ns)
        self.last_issue_ns = max(self.last_issue_ns, other.last_issue_ns)
        self.latency_us.add(other.latency_us)

    @property
    def issue_span_s(self) -> float:
        return max(0.0, (self.last_issue_ns - self.first_issue_ns) / 1e9) if self.count else 0.0

    @property
    def achieved_qps(self) -> float:
        """The rate of this class's own issues: its count - 1 gaps over its first..last issue."""
        span_s = self.issue_span_s
        return (self.count - 1) / span_s if span_s > 0 else math.nan

    def percentiles_ms(self) -> tuple[float, ...]:
        """Nearest rank: the smallest latency with at least q % of samples at or below it.

        HdrHistogram rounds the rank (int(q/100 * n + 0.5)), one sample lower than nearest rank
        for small n; asking it for the percentile of the nearest rank's count avoids that.
        """
        n = self.latency_us.get_total_count()
        if n == 0:
            return (math.nan,) * len(PERCENTILES)
        ranks = (nearest_rank(n, q) for q in PERCENTILES)
        return tuple(self.latency_us.get_value_at_percentile(100 * rank / n) / 1000
                     for rank in ranks)


class PhaseStats(ClassStats):
    """A schedule phase's statistics, with SLO attainment per tier."""

    __slots__ = ("by_tier",)

    def __init__(self) -> None:
        super().__init__()
        self.by_tier: dict[int, list[int]] = {}  # tier -> [count, met]

    def add(self, record: Record) -> None:
        super().add(record)
        counts = self.by_tier.setdefault(record.cls.tier, [0, 0])
        counts[0] += 1
        counts[1] += record.slo_met


class RunStats:
    """Per-class (and per-phase) statistics of a run; ``add`` is the Recorder's consumer."""

    def __init__(self, classes: Iterable[RequestClass], phase_count: int = 1) -> None:
        self.by_class: dict[RequestClass, ClassStats] = {c: ClassStats() for c in classes}
        # Per-phase rows only mean something with more than one phase.
        self.by_phase = [PhaseStats() for _ in range(phase_count)] if phase_count > 1 else []

    def add(self, records: Sequence[Record]) -> None:
        by_class, by_phase = self.by_class, self.by_phase
        for record in records:
            stats = by_class.get(record.cls)
            if stats is None:
                stats = by_class[record.cls] = ClassStats()
            stats.add(record)
            if by_phase:
                by_phase[record.phase].add(record)

    def overall(self) -> ClassStats:
        total = ClassStats()
        for stats in self.by_class.values():
            total.merge(stats)
        return total


@dataclass(frozen=True)
class ClassSummary:
    """One row of the summary table; latency percentiles cover samples answered OK."""

    tier: int | str
    slo: str
    count: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    slo_attainment_pct: float
    errors: int
    target_qps: float
    achieved_qps: float
    issue_span_s: float

    @property
    def label(self) -> str:
        """The row's name in --fail-if: the class label, or "all"."""
        return "all" if self.tier == "all" else f"tier{self.tier}_{self.slo}"


@dataclass(frozen=True)
class PhaseSummary:
    """One schedule phase: what was asked, what came, and how each tier fared."""

    phase: int
    start_s: float
    duration_s: float
    target_qps: float
    target_to_qps: float
    count: int
    achieved_qps: float
    p50_ms: float
    p99_ms: float
    errors: int
    slo_attainment_pct_by_tier: dict[str, float]


@dataclass(frozen=True)
class RunSummary:
    workload: str
    seed: int
    loadgen_valid: bool | None
    loadgen_verdicts: tuple[LoadGenVerdict, ...]
    interrupted: bool
    issue_span_s: float
    classes: tuple[ClassSummary, ...]
    overall: ClassSummary
    phases: tuple[PhaseSummary, ...] = ()
    # The run's time origin (CLOCK_MONOTONIC ns at GO): schedules and phases count from it.
    start_mono_ns: int = 0


def summarize(stats: RunStats, total_qps: float, workload: str, seed: int,
              verdicts: Sequence[LoadGenVerdict], interrupted: bool = False,
              phases: Sequence[Phase] = (), start_mono_ns: int = 0) -> RunSummary:
    """One row per class in the workload's class order, plus an overall row, plus one per
    phase of a schedule."""
    rows = tuple(_row(c.tier, c.slo, s, total_qps * c.fraction)
                 for c, s in stats.by_class.items())
    overall = stats.overall()
    valid_flags = [v.valid for v in verdicts]
    loadgen_valid = None if None in valid_flags or not verdicts else all(valid_flags)
    phase_rows, start_s = [], 0.0
    for index, (phase, phase_stats) in enumerate(zip(phases, stats.by_phase)):
        duration_s = phase.duration_ms / 1000
        p50, _, p99 = phase_stats.percentiles_ms()
        phase_rows.append(PhaseSummary(
            index, start_s, duration_s, phase.qps, phase.to_qps, phase_stats.count,
            phase_stats.count / duration_s, p50, p99, phase_stats.errors,
            {str(tier): 100.0 * met / count
             for tier, (count, met) in sorted(phase_stats.by_tier.items())}))
        start_s += duration_s
    return RunSummary(workload, seed, loadgen_valid, tuple(verdicts), interrupted,
                      overall.issue_span_s, rows, _row("all", "all", overall, total_qps),
                      tuple(phase_rows), start_mono_ns)


def _row(tier: int | str, slo: str, stats: ClassStats, target_qps: float) -> ClassSummary:
    p50, p95, p99 = stats.percentiles_ms()
    attainment = 100.0 * stats.met / stats.count if stats.count else math.nan
    return ClassSummary(tier, slo, stats.count, p50, p95, p99, attainment, stats.errors,
                        target_qps, stats.achieved_qps, stats.issue_span_s)


def format_summary(summary: RunSummary) -> str:
    """The spec's table (count, p50/p95/p99 ms, SLO attainment %) plus errors and rates, then
    LoadGen's verdict with its reasons."""
    header = (f"{'tier':>4} {'slo':<8} {'count':>7} {'p50_ms':>9} {'p95_ms':>9} {'p99_ms':>9} "
              f"{'slo_attainment_%':>16} {'errors':>7} {'target_qps':>10} {'achieved_qps':>12}")
    lines = [header, "-" * len(header)]
    for row in (*summary.classes, summary.overall):
        lines.append(
            f"{row.tier!s:>4} {row.slo:<8} {row.count:>7} {row.p50_ms:>9.2f} {row.p95_ms:>9.2f} "
            f"{row.p99_ms:>9.2f} {row.slo_attainment_pct:>16.1f} {row.errors:>7} "
            f"{row.target_qps:>10.2f} {row.achieved_qps:>12.2f}"
        )
    if summary.phases:
        lines.extend(_format_phases(summary.phases))
    valid = {True: "VALID", False: "INVALID", None: "unknown"}[summary.loadgen_valid]
    if not summary.loadgen_verdicts:
        valid = "none (arrivals from fastload's timer)"
    lines.append(f"workload {summary.workload}  seed {summary.seed}  LoadGen result {valid}"
                 + ("  INTERRUPTED (partial run)" if summary.interrupted else ""))
    for verdict in summary.loadgen_verdicts:
        if verdict.valid is False:
            lines.append(f"  LoadGen test {verdict.test} INVALID: "
                         + ("; ".join(verdict.reasons) or "no reason given in its summary log"))
        elif verdict.valid is None and not summary.interrupted:
            lines.append(f"  LoadGen test {verdict.test}: no verdict (it did not finish)")
    return "\n".join(lines)


def _format_phases(phases: Sequence[PhaseSummary]) -> list[str]:
    tiers = sorted({tier for p in phases for tier in p.slo_attainment_pct_by_tier}, key=int)
    header = (f"{'phase':>5} {'start_s':>8} {'target_qps':>13} {'count':>7} {'achieved':>9} "
              f"{'p50_ms':>9} {'p99_ms':>9} {'errors':>7}"
              + "".join(f" {'tier' + t + '_%':>8}" for t in tiers))
    lines = ["", header, "-" * len(header)]
    for p in phases:
        target = f"{p.target_qps:g}" + (f"..{p.target_to_qps:g}" if p.target_to_qps != p.target_qps
                                        else "")
        lines.append(
            f"{p.phase:>5} {p.start_s:>8.1f} {target:>13} {p.count:>7} {p.achieved_qps:>9.1f} "
            f"{p.p50_ms:>9.2f} {p.p99_ms:>9.2f} {p.errors:>7}"
            + "".join(f" {p.slo_attainment_pct_by_tier.get(t, math.nan):>8.1f}" for t in tiers))
    return lines


def write_json(summary: RunSummary, output_path: str | Path,
               extra: Mapping[str, object] | None = None) -> None:
    """The summary as JSON (NaN becomes null) so scripts need not parse the table; ``extra``
    adds top-level keys (a sharded run's ``shards``)."""
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    payload = {**asdict(summary), **(extra or {})}
    Path(output_path).write_text(json.dumps(clean(payload), indent=2) + "\n", encoding="utf-8")
