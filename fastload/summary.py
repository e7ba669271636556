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
from typing import Iterable, Sequence

from hdrh.histogram import HdrHistogram

from fastload.arrivals import LoadGenVerdict
from fastload.metrics import STATUS_OK, Record
from fastload.workload import RequestClass

# Latencies are recorded in µs from 1 µs to a day, 3 significant digits (~200 KB a class).
_HISTOGRAM_RANGE_US = (1, 86_400_000_000, 3)
PERCENTILES = (50, 95, 99)


class ClassStats:
    """What the summary needs of one class, updated record by record."""

    __slots__ = ("count", "met", "errors", "first_issue_ns", "last_issue_ns", "latency_us")

    def __init__(self) -> None:
        self.count = self.met = self.errors = 0
        self.first_issue_ns = math.inf
        self.last_issue_ns = -math.inf
        self.latency_us = HdrHistogram(*_HISTOGRAM_RANGE_US)

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
        ranks = (-(-q * n // 100) for q in PERCENTILES)  # ceil(q * n / 100) in integers
        return tuple(self.latency_us.get_value_at_percentile(100 * rank / n) / 1000
                     for rank in ranks)


class RunStats:
    """Per-class statistics of a run; ``add`` is the Recorder's consumer (one thread)."""

    def __init__(self, classes: Iterable[RequestClass]) -> None:
        self.by_class: dict[RequestClass, ClassStats] = {c: ClassStats() for c in classes}

    def add(self, records: Sequence[Record]) -> None:
        """One pass over a batch; this runs for every request, so it is written flat."""
        by_class, highest_us = self.by_class, _HISTOGRAM_RANGE_US[1]
        for record in records:
            stats = by_class.get(record.cls)
            if stats is None:
                stats = by_class[record.cls] = ClassStats()
            stats.count += 1
            issue_ns = record.issue_mono_ns
            if issue_ns < stats.first_issue_ns:
                stats.first_issue_ns = issue_ns
            if issue_ns > stats.last_issue_ns:
                stats.last_issue_ns = issue_ns
            if record.status == STATUS_OK:
                # Clamped into the histogram's range: a latency beyond a day counts as a day.
                stats.latency_us.record_value(
                    min(max((record.done_mono_ns - issue_ns) // 1000, 1), highest_us))
                stats.met += record.slo_met
            else:
                stats.errors += 1

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


def summarize(stats: RunStats, total_qps: float, workload: str, seed: int,
              verdicts: Sequence[LoadGenVerdict], interrupted: bool = False) -> RunSummary:
    """One row per class in the workload's class order, plus an overall row."""
    rows = tuple(_row(c.tier, c.slo, s, total_qps * c.fraction)
                 for c, s in stats.by_class.items())
    overall = stats.overall()
    valid_flags = [v.valid for v in verdicts]
    loadgen_valid = None if None in valid_flags or not verdicts else all(valid_flags)
    return RunSummary(workload, seed, loadgen_valid, tuple(verdicts), interrupted,
                      overall.issue_span_s, rows, _row("all", "all", overall, total_qps))


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
    valid = {True: "VALID", False: "INVALID", None: "unknown"}[summary.loadgen_valid]
    lines.append(f"workload {summary.workload}  seed {summary.seed}  LoadGen result {valid}"
                 + ("  INTERRUPTED (partial run)" if summary.interrupted else ""))
    for verdict in summary.loadgen_verdicts:
        if verdict.valid is False:
            lines.append(f"  LoadGen test {verdict.test} INVALID: "
                         + ("; ".join(verdict.reasons) or "no reason given in its summary log"))
        elif verdict.valid is None and not summary.interrupted:
            lines.append(f"  LoadGen test {verdict.test}: no verdict (it did not finish)")
    return "\n".join(lines)


def write_json(summary: RunSummary, output_path: str | Path) -> None:
    """The summary as JSON (NaN becomes null) so scripts need not parse the table."""
    def clean(value):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    Path(output_path).write_text(json.dumps(clean(asdict(summary)), indent=2) + "\n",
                                 encoding="utf-8")
