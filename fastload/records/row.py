"""One request's record and its CSV row: the columns, their types, and how a record becomes a row
(``records.reader`` reads rows back with the same types).

Recording is the only bookkeeping on the hot path: a Record is opened when a sample arrives from
its arrival process and closed exactly once when its call ends, whatever the outcome
(``finish`` holds that rule for every caller); ``records.recorder`` streams closed ones out.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastload.arrivals.pipe import IssuedSample

# The spec's columns first, in its order, then fastload's.
CSV_COLUMNS = (
    "timestamp_issued", "sample_id", "tier", "slo", "model", "latency_ns", "latency_ms", "slo_met",
    "status", "success", "deadline_ns", "send_lag_ns", "issue_mono_ns", "loadgen_sample_id",
    "issuer", "target_qps_at_issue", "phase",
)
# Each column's type when read back; booleans are written as Python prints them (True, False), a
# target rate is empty where there is none (a trace).
COLUMN_TYPES: dict[str, type] = {
    "timestamp_issued": int, "sample_id": int, "tier": int, "slo": str, "model": str,
    "latency_ns": int, "latency_ms": float, "slo_met": bool, "status": str, "success": bool,
    "deadline_ns": int, "send_lag_ns": int, "issue_mono_ns": int, "loadgen_sample_id": int,
    "issuer": str, "target_qps_at_issue": float, "phase": int,
    "shard": int,  # a --ray run's merged CSV only
}

STATUS_OK = "OK"
# A KServe server answered that the request's `timeout` ran out before it ran (Triton:
# UNAVAILABLE "Request timeout expired"): a scheduling outcome, like success=False, not an error.
STATUS_EXPIRED = "EXPIRED"
# Answers from the server, timed in the latency percentiles; any other status is an error.
ANSWERED = frozenset((STATUS_OK, STATUS_EXPIRED))
# Statuses fastload gives samples that never reached gRPC.
STATUS_CLIENT_OVERLOAD = "CLIENT_OVERLOAD"
STATUS_CLIENT_ERROR = "CLIENT_ERROR"
STATUS_NOT_SENT = "NOT_SENT"

# One row: timestamp_issued, sample_id, "tier,slo,model" (pre-quoted), then the rest. A format
# string costs half of csv.writer's per-row work; the line ending is csv.writer's.
_ROW = "%d,%d,%s,%d,%.3f,%s,%s,%s,%d,%d,%d,%d,%s,%s,%d\r\n"


class Record:
    """One issued sample; times are CLOCK_MONOTONIC ns except the Unix-ns issue time."""

    __slots__ = (
        "sample_id", "issuer", "loadgen_sample_id", "cls", "model", "issue_wall_ns",
        "issue_mono_ns", "deadline_ns", "send_mono_ns", "done_mono_ns", "status", "success",
        "phase", "target_qps",
    )
    def __init__(self, sample: IssuedSample) -> None:
        self.sample_id = sample.sample_id
        self.issuer = sample.issuer.plan.label
        self.loadgen_sample_id = sample.loadgen_id
        self.cls = sample.cls
        self.model = sample.model
        self.issue_mono_ns = sample.issue_mono_ns
        self.issue_wall_ns = sample.issue_wall_ns
        # A late client never extends a deadline: it counts from LoadGen's issue, not our send.
        self.deadline_ns = sample.issue_wall_ns + sample.cls.slo_ns
        self.send_mono_ns = 0
        self.done_mono_ns = 0
        self.status = ""
        self.success = False
        # Where the issue fell in the rate schedule; set by the writer, off the hot path.
        self.phase = 0
        self.target_qps = ""

    def finish(self, done_mono_ns: int, status: str, success: bool) -> bool:
        """End the record once; False if it had ended (gRPC reporting after the watchdog)."""
        if self.status:
            return False
        self.done_mono_ns = done_mono_ns
        self.status = status
        self.success = success
        return True

    @property
    def latency_ns(self) -> int:
        """Issue to completion; -1 for a sample that never completed."""
        return self.done_mono_ns - self.issue_mono_ns if self.done_mono_ns else -1

    @property
    def send_lag_ns(self) -> int:
        return self.send_mono_ns - self.issue_mono_ns if self.send_mono_ns else -1

    @property
    def slo_met(self) -> bool:
        """Met only if the scheduler answered success within the class SLO."""
        return self.status == STATUS_OK and self.success and self.latency_ns <= self.cls.slo_ns

    def csv_line(self, class_and_model: str) -> str:
        """The record's CSV row; ``class_and_model`` is its "tier,slo,model", CSV-quoted."""
        latency_ns = self.latency_ns
        return _ROW % (
            self.issue_wall_ns, self.sample_id, class_and_model, latency_ns, latency_ns / 1e6,
            self.slo_met, self.status, self.success, self.deadline_ns, self.send_lag_ns,
            self.issue_mono_ns, self.loadgen_sample_id, self.issuer, self.target_qps, self.phase,
        )

    def values(self) -> tuple:
        """The record's row as values in CSV_COLUMNS order, as ``csv_line`` writes them (the
        latency in ms to the µs, the target rate as text). The properties are inlined: this
        runs once per record on the writer thread."""
        cls, issue_ns, done_ns, send_ns = (self.cls, self.issue_mono_ns, self.done_mono_ns,
                                           self.send_mono_ns)
        latency_ns = done_ns - issue_ns if done_ns else -1
        return (
            self.issue_wall_ns, self.sample_id, cls.tier, cls.slo, self.model, latency_ns,
            round(latency_ns / 1e6, 3),
            self.status == STATUS_OK and self.success and latency_ns <= cls.slo_ns,
            self.status, self.success, self.deadline_ns, send_ns - issue_ns if send_ns else -1,
            issue_ns, self.loadgen_sample_id, self.issuer, self.target_qps, self.phase,
        )


def csv_field(text: str) -> str:
    """Quoted as csv.writer quotes (only when needed): model names come from workload files."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
