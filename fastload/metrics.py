"""Per-request records, and the CSV they stream to while the run goes on.

Recording is the only bookkeeping on the hot path: a Record is opened when a sample arrives from
LoadGen and closed exactly once when its call ends, whatever the outcome. Closed records wait in a
list that a writer thread turns into CSV rows and summary statistics every ``FLUSH_PERIOD_S``: the
client holds only the records in flight, and a run killed by SIGKILL leaves a CSV that is at most
one flush behind.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING, Callable, Sequence, TextIO

if TYPE_CHECKING:
    from fastload.arrivals.pipe import IssuedSample
    from fastload.contract.rates import RateSchedule
    from fastload.contract.workload import RequestClass

# The spec's columns first, in its order, then fastload's.
CSV_COLUMNS = (
    "timestamp_issued", "sample_id", "tier", "slo", "model", "latency_ns", "latency_ms", "slo_met",
    "status", "success", "deadline_ns", "send_lag_ns", "issue_mono_ns", "loadgen_sample_id",
    "issuer", "target_qps_at_issue", "phase",
)

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

# Rows reach the file this often.
FLUSH_PERIOD_S = 0.25
# Records turned into rows and statistics between two releases of the GIL: about 0.2 ms of work.
# Measured at 1000 QPS: one hold per flush (250 records, ~1.3 ms) raised the send-lag p99.
_RECORDS_PER_GIL_HOLD = 48


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


def csv_field(text: str) -> str:
    """Quoted as csv.writer quotes (only when needed): model names come from workload files."""
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


class Recorder:
    """Opens and closes records from any thread; a writer thread streams closed ones out.

    Each flush writes the rows of the records closed since the last one, in the order they
    closed, and hands the same records to ``consume`` (the run's statistics). ``sample_id``
    numbers samples in issue order, so sorting by it gives issue order. Each record is placed
    in ``schedule`` (phase, target rate) by its issue time after ``start_mono_ns``; without a
    schedule (a trace) the target rate is left empty.
    """

    def __init__(self, csv_file: TextIO, consume: Callable[[Sequence[Record]], None],
                 schedule: RateSchedule | None = None, start_mono_ns: int = 0) -> None:
        self._csv = StreamedCsv(csv_file)
        self._consume = consume
        self._schedule = schedule
        self._start_mono_ns = start_mono_ns
        self._class_and_model: dict[tuple[RequestClass, str], str] = {}
        self._open: dict[int, Record] = {}
        self._closed: list[Record] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._flush_forever, name="fastload-writer",
                                        daemon=True)
        self._write = self._csv.write
        self._write(",".join(CSV_COLUMNS) + "\r\n")
        self._thread.start()

    def open(self, sample: IssuedSample) -> Record:
        record = Record(sample)
        self._open[record.sample_id] = record  # a dict store is atomic
        return record

    def unflushed(self) -> int:
        """Closed records not yet handed to ``consume``."""
        return len(self._closed)

    def close(self, record: Record, done_mono_ns: int, status: str, success: bool) -> bool:
        """Finish a record once; a later close (gRPC after the watchdog) returns False."""
        with self._lock:
            if not record.finish(done_mono_ns, status, success):
                return False
            del self._open[record.sample_id]
            self._closed.append(record)
        return True

    def add_closed(self, record: Record) -> None:
        """A record another process opened and closed (--processes): written like the rest."""
        with self._lock:
            self._closed.append(record)

    def _flush_forever(self) -> None:
        while not self._stopping.wait(FLUSH_PERIOD_S):
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._closed = self._closed, []
        for start in range(0, len(batch), _RECORDS_PER_GIL_HOLD):
            if start:
                time.sleep(0)  # let a waiting sender have the GIL
            chunk = batch[start:start + _RECORDS_PER_GIL_HOLD]
            self._place(chunk)
            self._write("".join([record.csv_line(self._label(record)) for record in chunk]))
            self._consume(chunk)

    def _place(self, batch: list[Record]) -> None:
        schedule = self._schedule
        if schedule is None:
            return
        if schedule.is_constant:
            rate = f"{schedule.phases[0].qps:g}"
            for record in batch:
                record.target_qps = rate
            return
        start_ns = self._start_mono_ns
        for record in batch:
            t_s = (record.issue_mono_ns - start_ns) / 1e9
            record.phase = schedule.phase_index(t_s)
            record.target_qps = f"{schedule.rate_at(t_s):.6g}"

    def _label(self, record: Record) -> str:
        key = (record.cls, record.model)
        label = self._class_and_model.get(key)
        if label is None:
            label = self._class_and_model[key] = ",".join(
                csv_field(str(part)) for part in (record.cls.tier, record.cls.slo, record.model))
        return label

    @property
    def write_error(self) -> OSError | None:
        return self._csv.write_error

    def finish(self) -> None:
        """Stop the writer, write what is left (samples never completed as NOT_SENT), close."""
        self._stopping.set()
        self._thread.join()
        with self._lock:
            for record in self._open.values():
                record.status = STATUS_NOT_SENT
                self._closed.append(record)
            self._open.clear()
        self._flush()
        self._csv.close()


class StreamedCsv:
    """A CSV file that rows reach as they come: each write is flushed to the OS. After a failed
    write (disk full) it writes no more, so that the run goes on and its summary counts every
    sample; ``write_error`` says what failed."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self.write_error: OSError | None = None

    def write(self, text: str) -> None:
        if self.write_error is not None:
            return
        try:
            self._file.write(text)
            self._file.flush()
        except OSError as exc:
            self.write_error = exc
            print(f"fastload: error: cannot write {self._file.name} ({exc.strerror}); the run "
                  f"goes on and its summary counts every sample", file=sys.stderr, flush=True)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self.write_error = self.write_error or exc
