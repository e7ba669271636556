"""Per-request records, the CSV, the summary table and its JSON twin.

Recording is the only bookkeeping on the hot path: one Record per issued sample, created when the
sample arrives from LoadGen and finished exactly once when its call ends, whatever the outcome.
"""
from __future__ import annotations

import csv
import json
import math
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fastload.workload import RequestClass

# The spec's columns first, in its order, then fastload's.
CSV_COLUMNS = (
    "timestamp_issued", "sample_id", "tier", "slo", "model", "latency_ns", "latency_ms", "slo_met",
    "status", "success", "deadline_ns", "send_lag_ns", "issue_mono_ns", "loadgen_sample_id",
    "issuer",
)

STATUS_OK = "OK"
# Statuses fastload gives samples that never reached gRPC.
STATUS_CLIENT_OVERLOAD = "CLIENT_OVERLOAD"
STATUS_CLIENT_ERROR = "CLIENT_ERROR"
STATUS_NOT_SENT = "NOT_SENT"


class Record:
    """One issued sample; times are CLOCK_MONOTONIC ns except the Unix-ns issue time."""

    __slots__ = (
        "sample_id", "issuer", "loadgen_sample_id", "cls", "model", "issue_wall_ns",
        "issue_mono_ns", "deadline_ns", "send_mono_ns", "done_mono_ns", "status", "success",
    )

    def __init__(self, issuer: str, loadgen_sample_id: int, cls: RequestClass, model: str,
                 issue_mono_ns: int, issue_wall_ns: int) -> None:
        self.sample_id = -1  # numbered in issue order once the run is over
        self.issuer = issuer
        self.loadgen_sample_id = loadgen_sample_id
        self.cls = cls
        self.model = model
        self.issue_mono_ns = issue_mono_ns
        self.issue_wall_ns = issue_wall_ns
        # A late client never extends a deadline: it counts from LoadGen's issue, not our send.
        self.deadline_ns = issue_wall_ns + cls.slo_ns
        self.send_mono_ns = 0
        self.done_mono_ns = 0
        self.status = ""
        self.success = False

    @property
    def latency_ns(self) -> int:
        return self.done_mono_ns - self.issue_mono_ns

    @property
    def send_lag_ns(self) -> int:
        return self.send_mono_ns - self.issue_mono_ns if self.send_mono_ns else -1

    @property
    def slo_met(self) -> bool:
        """Met only if the scheduler answered success within the class SLO."""
        return self.status == STATUS_OK and self.success and self.latency_ns <= self.cls.slo_ns


class Recorder:
    """Owns the records of a run; creation and completion are safe from any thread."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._lock = threading.Lock()

    def open(self, issuer: str, loadgen_sample_id: int, cls: RequestClass, model: str,
             issue_mono_ns: int, issue_wall_ns: int) -> Record:
        record = Record(issuer, loadgen_sample_id, cls, model, issue_mono_ns, issue_wall_ns)
        self.records.append(record)  # list.append is atomic
        return record

    def in_issue_order(self) -> list[Record]:
        """The records sorted by issue time and numbered: several senders open them, and
        LoadGen processes interleave, so arrival order can differ slightly from issue order."""
        records = sorted(self.records, key=lambda r: r.issue_mono_ns)
        for sample_id, record in enumerate(records):
            record.sample_id = sample_id
        return records

    def close(self, record: Record, done_mono_ns: int, status: str, success: bool) -> bool:
        """Finish a record once; a later close (gRPC after the watchdog) returns False."""
        with self._lock:
            if record.status:
                return False
            record.done_mono_ns = done_mono_ns
            record.success = success
            record.status = status
        return True


def write_csv(records: Sequence[Record], output_path: str | Path) -> None:
    """One row per issued sample, in issue order."""
    with open(output_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in records:
            latency_ns = r.latency_ns if r.status else -1
            writer.writerow((
                r.issue_wall_ns, r.sample_id, r.cls.tier, r.cls.slo, r.model, latency_ns,
                f"{latency_ns / 1e6:.3f}", r.slo_met, r.status or STATUS_NOT_SENT, r.success,
                r.deadline_ns, r.send_lag_ns, r.issue_mono_ns, r.loadgen_sample_id, r.issuer,
            ))


@dataclass(frozen=True)
class ClassSummary:
    """One row of the summary table; latency percentiles cover samples that got a response."""

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


@dataclass(frozen=True)
class RunSummary:
    workload: str
    seed: int
    loadgen_valid: bool | None
    interrupted: bool
    issue_span_s: float
    classes: tuple[ClassSummary, ...]
    overall: ClassSummary


def summarize(records: Sequence[Record], classes: Iterable[RequestClass], total_qps: float,
              workload: str, seed: int, loadgen_valid: bool | None,
              interrupted: bool = False) -> RunSummary:
    """Group by (tier, slo) in the workload's class order, plus an overall row."""
    classes = tuple(classes)
    issue_ns = [r.issue_mono_ns for r in records]
    span_s = (max(issue_ns) - min(issue_ns)) / 1e9 if len(issue_ns) > 1 else 0.0
    by_class: dict[RequestClass, list[Record]] = {c: [] for c in classes}
    for r in records:
        by_class.setdefault(r.cls, []).append(r)
    rows = tuple(
        _summarize_group(c.tier, c.slo, group, total_qps * c.fraction, span_s)
        for c, group in by_class.items()
    )
    overall = _summarize_group("all", "all", records, total_qps, span_s)
    return RunSummary(workload, seed, loadgen_valid, interrupted, span_s, rows, overall)


def _summarize_group(tier: int | str, slo: str, group: Sequence[Record], target_qps: float,
                     span_s: float) -> ClassSummary:
    answered = np.array([r.latency_ns for r in group if r.status == STATUS_OK], dtype=np.float64)
    p50, p95, p99 = (np.percentile(answered, (50, 95, 99)) / 1e6) if answered.size else (math.nan,) * 3
    met = sum(r.slo_met for r in group)
    errors = sum(r.status != STATUS_OK for r in group)
    return ClassSummary(
        tier, slo, len(group), float(p50), float(p95), float(p99),
        100.0 * met / len(group) if group else math.nan, errors, target_qps,
        len(group) / span_s if span_s > 0 else math.nan,
    )


def format_summary(summary: RunSummary) -> str:
    """The spec's table (count, p50/p95/p99 ms, SLO attainment %) plus errors and rates."""
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
