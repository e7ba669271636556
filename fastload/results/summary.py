"""The summary of a run: one row per class, an overall row and per-phase rows, as the table on
stdout and its JSON twin, computed from the run's statistics (``results.stats``)."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence

from fastload.contract.rates import Phase
from fastload.contract.verdicts import LoadGenVerdict
from fastload.results.certificate import LoadCertificate, describe
from fastload.results.stats import ClassStats, RunStats


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
    load: LoadCertificate | None = None  # whether the load was the one planned
    priority_signal: str = "as-is"  # the tiers sent (contract.signals); rows keep true classes


def summarize(stats: RunStats, total_qps: float, workload: str, seed: int,
              verdicts: Sequence[LoadGenVerdict], interrupted: bool = False,
              phases: Sequence[Phase] = (), start_mono_ns: int = 0,
              load: LoadCertificate | None = None, priority_signal: str = "as-is"
              ) -> RunSummary:
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
                      tuple(phase_rows), start_mono_ns, load, priority_signal)


def _row(tier: int | str, slo: str, stats: ClassStats, target_qps: float) -> ClassSummary:
    p50, p95, p99 = stats.percentiles_ms()
    attainment = 100.0 * stats.met / stats.count if stats.count else math.nan
    return ClassSummary(tier, slo, stats.count, p50, p95, p99, attainment, stats.errors,
                        target_qps, stats.achieved_qps, stats.issue_span_s)


def format_summary(summary: RunSummary) -> str:
    """The load certificate's line, the spec's table (count, p50/p95/p99 ms, SLO attainment %)
    plus errors and rates, then LoadGen's verdict with its reasons."""
    header = (f"{'tier':>4} {'slo':<8} {'count':>7} {'p50_ms':>9} {'p95_ms':>9} {'p99_ms':>9} "
              f"{'slo_attainment_%':>16} {'errors':>7} {'target_qps':>10} {'achieved_qps':>12}")
    lines = [*([describe(summary.load)] if summary.load is not None else []),
             header, "-" * len(header)]
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
    lines.append(f"workload {summary.workload}  seed {summary.seed}  priority signal "
                 f"{summary.priority_signal}  LoadGen result {valid}"
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
    """The summary as JSON so scripts need not parse the table; ``extra`` adds top-level keys
    (a sharded run's ``shards``)."""
    payload = {**asdict(summary), **(extra or {})}
    Path(output_path).write_text(json.dumps(json_ready(payload), indent=2) + "\n",
                                 encoding="utf-8")


def json_ready(value: object) -> object:
    """``value`` with every NaN made None, which JSON writes as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value
