"""The shards' rows, as they stream in, into one results file and one run's statistics.

Each row keeps the shard's own values but two: ``issue_mono_ns`` moves onto the driver's
CLOCK_MONOTONIC (by the shard's measured offset), so that issue times of all shards compare and
the report's time axis is one; ``target_qps_at_issue`` becomes the whole run's rate, not the
shard's share. A trailing ``shard`` column says where the row came from. The statistics are the
run's own (RunStats), fed from the merged rows, so a shard that dies still counts every row
it sent.
"""
from __future__ import annotations

import csv
import io
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from fastload.contract.workload import RequestClass
from fastload.records.reader import numpy_columns, parse_table
from fastload.records.row import CSV_COLUMNS
from fastload.records.streamed import StreamedCsv
from fastload.results.stats import RunStats
from fastload.run.outputs import RunOutputs

MERGED_COLUMNS = (*CSV_COLUMNS, "shard")
_COLUMN = {name: i for i, name in enumerate(CSV_COLUMNS)}
# What the run's statistics read of a record.
_STATS_COLUMNS = ("tier", "slo", "issue_mono_ns", "status", "latency_ns", "slo_met", "phase",
                  "send_lag_ns")


class RowRecord(NamedTuple):
    """What the statistics read of a record, from a shard's CSV row."""

    cls: RequestClass
    issue_mono_ns: int
    status: str
    latency_ns: int
    slo_met: bool
    phase: int
    send_lag_ns: int


class ShardMerge:
    """Appends shards' rows to one results file and feeds ``stats``: to the CSV (after its
    header), or to a Parquet run's journal as typed batches."""

    def __init__(self, outputs: RunOutputs, stats: RunStats,
                 classes: tuple[RequestClass, ...], shard_count: int) -> None:
        self.path = outputs.records
        self._journal = (outputs.open_journal(MERGED_COLUMNS) if outputs.parquet is not None
                         else None)
        self._csv = StreamedCsv(outputs.open_csv()) if self._journal is None else None
        self._stats = stats
        self._classes = {(c.tier, c.slo): c for c in classes}
        self._shard_count = shard_count
        if self._csv is not None:
            self._write_csv([MERGED_COLUMNS])

    @property
    def write_error(self) -> OSError | None:
        return (self._csv or self._journal).write_error

    def add(self, shard: int, data: bytes, mono_offset_ns: int) -> int:
        """Merge whole CSV rows from ``shard``, whose CLOCK_MONOTONIC is ``mono_offset_ns``
        ahead of the driver's; returns how many."""
        # Every column for the journal; for the CSV, whose rows keep the shard's text, only
        # what the statistics read.
        table = parse_table(data, CSV_COLUMNS,
                            CSV_COLUMNS if self._journal is not None else _STATS_COLUMNS)
        table = _replaced(table, "issue_mono_ns", pc.subtract(
            table["issue_mono_ns"], pa.scalar(mono_offset_ns, pa.int64())))
        if self._journal is not None:
            table = _replaced(table, "target_qps_at_issue", pc.multiply(
                table["target_qps_at_issue"], float(self._shard_count)))
            self._journal.write_table(
                table.append_column("shard", pa.array([shard] * len(table), pa.int64())))
        else:
            self._write_csv(self._csv_rows(data, shard, mono_offset_ns))
        columns = numpy_columns(table, _STATS_COLUMNS)
        tiers, slos, *rest = (columns[name].tolist() for name in _STATS_COLUMNS)
        self._stats.add([RowRecord(self._classes[(tier, slo)], *values)
                         for tier, slo, *values in zip(tiers, slos, *rest)])
        return len(table)

    def _csv_rows(self, data: bytes, shard: int, mono_offset_ns: int) -> list[list[str]]:
        """The rows as the shard wrote them but for the merged issue time and rate."""
        rows = list(csv.reader(data.decode("utf-8").splitlines()))
        issue, target = _COLUMN["issue_mono_ns"], _COLUMN["target_qps_at_issue"]
        for row in rows:
            row[issue] = str(int(row[issue]) - mono_offset_ns)
            if row[target]:
                row[target] = f"{float(row[target]) * self._shard_count:.6g}"
            row.append(str(shard))
        return rows

    def _write_csv(self, rows: list) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerows(rows)
        self._csv.write(text.getvalue())
        self._csv.flush()

    def close(self) -> None:
        (self._csv or self._journal).close()


def _replaced(table: pa.Table, name: str, column: pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)
