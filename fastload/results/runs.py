"""Runs read back for the report: each CSV's columns and its per-class rows (count, nearest-rank
p50/p95/p99 over answered samples, SLO attainment, errors, achieved rate), computed from the CSV,
the record of what happened, so a report never depends on a summary another version wrote. The
one thing a CSV cannot tell, whether its load was the one planned, is the load certificate in
the summary JSON beside it."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from fastload.contract.config import server_metrics_path
from fastload.contract.percentiles import nearest_rank
from fastload.records.reader import ResultsFileError, read_columns
from fastload.records.row import ANSWERED
from fastload.results.certificate import CLIENT_LIMITED

QUANTILES = (50, 95, 99)
# The columns a report reads of each run.
RUN_COLUMNS = ("tier", "slo", "latency_ns", "slo_met", "status", "issue_mono_ns",
               "target_qps_at_issue")


class ReportError(ValueError):
    """An input that cannot be read as a run; the message names it."""


@dataclass(frozen=True)
class ClassRow:
    tier: int | str
    slo: str
    count: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    slo_attainment_pct: float | None
    errors: int
    achieved_qps: float | None


@dataclass
class Run:
    """One CSV: its series, offered load and the columns the report needs."""

    series: str
    offered_qps: float
    csv: Path
    tier: np.ndarray
    slo: np.ndarray
    latency_ns: np.ndarray
    answered: np.ndarray
    slo_met: np.ndarray
    issue_mono_ns: np.ndarray
    classes: list[ClassRow] = field(default_factory=list)
    tiers: dict[str, float | None] = field(default_factory=dict)
    overall: ClassRow | None = None
    load: dict | None = None  # the load certificate of its summary JSON; None without one
    # From the summary JSON too: the priority signal sent and the seed (None without one), and
    # the series its other signals share (a sweep's WORKLOAD-POLICY; else its own series).
    signal: str | None = None
    seed: int | None = None
    base_series: str = ""
    # The run's GO (monotonic ns; None without a summary JSON), the origin of its server
    # metrics' clock, and their file beside the CSV (None: it scraped none).
    start_mono_ns: int | None = None
    server_csv: Path | None = None

    @property
    def counted(self) -> bool:
        """Whether its latencies are the server's result: not when the client was the
        bottleneck."""
        return self.load is None or self.load["verdict"] != CLIENT_LIMITED


def read_run(path: Path, series: str, offered_qps: float | None = None,
             base_series: str | None = None) -> Run:
    """A fastload CSV as arrays, with its per-class rows computed."""
    try:
        columns = read_columns(path, RUN_COLUMNS)
    except ResultsFileError as exc:
        raise ReportError(str(exc)) from None
    rows = len(columns["tier"])
    if not rows:
        raise ReportError(f"{path}: not a fastload CSV with rows (needs columns "
                          f"{', '.join(sorted(RUN_COLUMNS))})")
    if offered_qps is None:
        targets = columns["target_qps_at_issue"]
        targets = targets[~np.isnan(targets)]
        offered_qps = float(np.median(targets)) if len(targets) else math.nan
    run = Run(series, offered_qps, path, tier=columns["tier"], slo=columns["slo"],
              latency_ns=columns["latency_ns"],
              answered=np.isin(columns["status"], list(ANSWERED)),
              slo_met=columns["slo_met"], issue_mono_ns=columns["issue_mono_ns"])
    classes = sorted({(int(t), str(s)) for t, s in zip(run.tier, run.slo)},
                     key=lambda c: (c[0], slo_order(c[1])))
    run.classes = [_row(run, (run.tier == t) & (run.slo == s), t, s) for t, s in classes]
    run.overall = _row(run, np.ones(rows, bool), "all", "all")
    run.tiers = {str(t): pct(run.slo_met[run.tier == t]) for t in sorted(set(run.tier.tolist()))}
    summary = _summary(path.with_suffix(".json"))
    run.load, run.signal, run.seed = (summary.get("load"), summary.get("priority_signal"),
                                      summary.get("seed"))
    run.base_series = base_series or series
    run.start_mono_ns = summary.get("start_mono_ns")
    server_csv = server_metrics_path(path)
    run.server_csv = server_csv if server_csv.exists() and run.start_mono_ns else None
    return run


def _summary(summary_json: Path) -> dict:
    """A run's summary JSON; empty when there is none (its fields then predate the run's
    version, or the CSV came alone) or it is empty (the run was killed before its end)."""
    try:
        text = summary_json.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return json.loads(text) if text.strip() else {}


def slo_order(slo: str) -> int:
    """The spec's SLOs in their order, any other after them."""
    order = ("urgent", "normal", "relaxed")
    return order.index(slo) if slo in order else len(order)


def _row(run: Run, mask: np.ndarray, tier: int | str, slo: str) -> ClassRow:
    answered = np.sort(run.latency_ns[mask & run.answered])
    quantiles = [nearest_rank_ms(answered, q) for q in QUANTILES]
    issues = np.sort(run.issue_mono_ns[mask])
    span_s = (issues[-1] - issues[0]) / 1e9 if len(issues) > 1 else 0.0
    return ClassRow(tier, slo, int(mask.sum()), *quantiles, pct(run.slo_met[mask]),
                    int((mask & ~run.answered).sum()),
                    (len(issues) - 1) / span_s if span_s > 0 else None)


def nearest_rank_ms(sorted_ns: np.ndarray, q: int) -> float | None:
    """The smallest latency with at least q % of samples at or below it, in ms."""
    if len(sorted_ns) == 0:
        return None
    return float(sorted_ns[nearest_rank(len(sorted_ns), q) - 1]) / 1e6


def pct(flags: np.ndarray) -> float | None:
    """The share of True in %, None for no flags."""
    return 100.0 * float(flags.mean()) if len(flags) else None


def load_runs(inputs: Sequence[Path], labels: Sequence[str]) -> list[Run]:
    """Each input a CSV (its series: the matching --label, else its file name) or a sweep
    folder (its points, in their series, at their offered loads)."""
    csv_count = sum(not path.is_dir() for path in inputs)
    if len(labels) > csv_count:
        raise ReportError(f"{len(labels)} --label for {csv_count} CSV files")
    runs: list[Run] = []
    csv_index = 0
    for path in inputs:
        if path.is_dir():
            sweep = path / "sweep.json"
            if not sweep.exists():
                raise ReportError(f"{path}: a folder, but no sweep.json in it")
            for point in json.loads(sweep.read_text())["points"]:
                if point["overall"] is None:
                    continue  # the point ended before traffic
                runs.append(read_run(path / point["csv"], point["series"], point["target_qps"],
                                     point.get("base_series")))
        else:
            label = labels[csv_index] if csv_index < len(labels) else path.stem
            csv_index += 1
            runs.append(read_run(path, label))
    return runs


def at_highest_load(runs: list[Run]) -> list[Run]:
    """Each series' run at its highest offered load whose latencies are the server's (a
    client-limited run only where the series has no other), in series order."""
    peak: dict[str, Run] = {}
    for run in runs:
        best = peak.get(run.series)
        if best is None or (run.counted, run.offered_qps) > (best.counted, best.offered_qps):
            peak[run.series] = run
    return list(peak.values())
