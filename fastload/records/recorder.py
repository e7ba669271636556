"""The Recorder: opens and closes records from any thread while a writer thread streams the closed
ones to the results file (CSV rows, or a Parquet run's journal) and to the run's statistics.

Closed records wait in a list that the writer turns into rows and statistics every
``FLUSH_PERIOD_S``: the client holds only the records in flight, and a run killed by SIGKILL
leaves a results file that is at most one flush behind.
"""
from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, TextIO

from fastload.records.row import CSV_COLUMNS, STATUS_NOT_SENT, Record, csv_field
from fastload.records.streamed import StreamedCsv

if TYPE_CHECKING:
    from fastload.arrivals.pipe import IssuedSample
    from fastload.contract.rates import RateSchedule
    from fastload.contract.workload import RequestClass

# Rows reach the file this often.
FLUSH_PERIOD_S = 0.25
# Records turned into rows and statistics between two releases of the GIL: about 0.2 ms of work.
# Measured at 1000 QPS: one hold per flush (250 records, ~1.3 ms) raised the send-lag p99.
_RECORDS_PER_GIL_HOLD = 48


class RowSink(Protocol):
    """Where the writer's rows go (``CsvRows``, ``columnar.ArrowRows``): ``write`` takes a
    flush's records a chunk at a time, ``flush`` hands what the flush wrote to the OS."""

    @property
    def write_error(self) -> OSError | None: ...

    def write(self, records: Sequence[Record]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class Recorder:
    """Opens and closes records from any thread; a writer thread streams closed ones out.

    Each flush writes the rows of the records closed since the last one, in the order they
    closed, and hands the same records to ``consume`` (the run's statistics). ``sample_id``
    numbers samples in issue order, so sorting by it gives issue order. Each record is placed
    in ``schedule`` (phase, target rate) by its issue time after ``start_mono_ns``; without a
    schedule (a trace) the target rate is left empty.
    """

    def __init__(self, rows: RowSink, consume: Callable[[Sequence[Record]], None],
                 schedule: RateSchedule | None = None, start_mono_ns: int = 0) -> None:
        self._rows = rows
        self._consume = consume
        self._schedule = schedule
        self._start_mono_ns = start_mono_ns
        self._open: dict[int, Record] = {}
        self._closed: list[Record] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._flush_forever, name="fastload-writer",
                                        daemon=True)
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
            self._rows.write(chunk)
            self._consume(chunk)
        self._rows.flush()

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

    @property
    def write_error(self) -> OSError | None:
        return self._rows.write_error

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
        self._rows.close()


class CsvRows:
    """The Recorder's rows as CSV: the header first, then one line per record."""

    def __init__(self, file: TextIO) -> None:
        self._csv = StreamedCsv(file)
        self._class_and_model: dict[tuple[RequestClass, str], str] = {}
        self._csv.write(",".join(CSV_COLUMNS) + "\r\n")
        self._csv.flush()

    @property
    def write_error(self) -> OSError | None:
        return self._csv.write_error

    def write(self, records: Sequence[Record]) -> None:
        self._csv.write("".join([record.csv_line(self._label(record)) for record in records]))

    def flush(self) -> None:
        self._csv.flush()

    def _label(self, record: Record) -> str:
        key = (record.cls, record.model)
        label = self._class_and_model.get(key)
        if label is None:
            label = self._class_and_model[key] = ",".join(
                csv_field(str(part)) for part in (record.cls.tier, record.cls.slo, record.model))
        return label

    def close(self) -> None:
        self._csv.close()
