"""The shards' rows, as they stream in, into one CSV and one run's statistics.

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
from typing import NamedTuple, TextIO

from fastload.contract.workload import RequestClass
from fastload.records.reader import parse_rows
from fastload.records.recorder import StreamedCsv
from fastload.records.row import CSV_COLUMNS
from fastload.results.stats import RunStats

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
    """Appends shards' rows to one CSV (after writing its header) and feeds ``stats``."""

    def __init__(self, csv_file: TextIO, stats: RunStats, classes: tuple[RequestClass, ...],
                 shard_count: int) -> None:
        self._csv = StreamedCsv(csv_file)
        self._stats = stats
        self._classes = {(c.tier, c.slo): c for c in classes}
        self._shard_count = shard_count
        self._write([MERGED_COLUMNS])

    @property
    def write_error(self) -> OSError | None:
        return self._csv.write_error

    def add(self, shard: int, data: bytes, mono_offset_ns: int) -> int:
        """Merge whole CSV rows from ``shard``, whose CLOCK_MONOTONIC is ``mono_offset_ns``
        ahead of the driver's; returns how many."""
        rows = list(csv.reader(data.decode("utf-8").splitlines()))
        issue, target = _COLUMN["issue_mono_ns"], _COLUMN["target_qps_at_issue"]
        for row in rows:
            row[issue] = str(int(row[issue]) - mono_offset_ns)
            if row[target]:
                row[target] = f"{float(row[target]) * self._shard_count:.6g}"
            row.append(str(shard))
        columns = parse_rows(data, CSV_COLUMNS, _STATS_COLUMNS)
        columns["issue_mono_ns"] = columns["issue_mono_ns"] - mono_offset_ns
        tiers, slos, *rest = (columns[name].tolist() for name in _STATS_COLUMNS)
        self._write(rows)
        self._stats.add([RowRecord(self._classes[(tier, slo)], *values)
                         for tier, slo, *values in zip(tiers, slos, *rest)])
        return len(rows)

    def _write(self, rows: list) -> None:
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerows(rows)
        self._csv.write(text.getvalue())

    def close(self) -> None:
        self._csv.close()
