"""A run's records as Parquet (``--output-format parquet``): streamed during the run to an Arrow
journal, sealed into Parquet when the run ends.

Why a journal: a Parquet file can be read only once its footer is written, at close, so a
ParquetWriter killed by SIGKILL leaves nothing readable. The journal, ``<stem>.arrows``, is
Arrow's IPC stream format: one record batch per writer flush (every ``FLUSH_PERIOD_S``, 0.25 s),
each readable as soon as it is written, so a SIGKILL loses at most the records closed since the
last flush — the CSV's guarantee. At the end of the run ``seal`` rewrites the journal, batch by
batch, into ``<stem>.parquet`` (row groups of ``ROW_GROUP_ROWS``, class/model/status/issuer
dictionary-encoded, the run's metadata in the footer's key-value pairs) and removes it. A journal
left by a killed run is read like any results file (``records.reader``) and sealed by
``python -m fastload.report --seal``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fastload.records.row import COLUMN_TYPES, CSV_COLUMNS, Record
from fastload.records.streamed import WriteGuard

# Rows per Parquet row group: pyarrow's own default maximum; readers skip whole groups' columns.
ROW_GROUP_ROWS = 1 << 20
# fastload's keys in the footer's key-value metadata (beside pyarrow's schema) start so; each
# value is JSON.
METADATA_PREFIX = "fastload."
_TARGET_QPS = CSV_COLUMNS.index("target_qps_at_issue")

# Arrow's type for each of records.row's COLUMN_TYPES.
ARROW_TYPES = {int: pa.int64(), float: pa.float64(), bool: pa.bool_(), str: pa.string()}
_ZERO = {pa.int64(): 0, pa.float64(): 0.0, pa.bool_(): False, pa.string(): ""}


def journal_schema(columns: Sequence[str] = CSV_COLUMNS) -> pa.Schema:
    """The journal's columns: the CSV's, typed; strings plain (each batch stands alone)."""
    return pa.schema([(name, ARROW_TYPES[COLUMN_TYPES[name]]) for name in columns])


def parquet_schema(schema: pa.Schema) -> pa.Schema:
    """The Parquet file's columns: the journal's, strings dictionary-encoded (a handful of
    distinct values each: Arrow keeps the dictionary when the file is read back)."""
    return pa.schema([(f.name, pa.dictionary(pa.int32(), pa.string()))
                      if f.type == pa.string() else f for f in schema])


class Journal:
    """The journal being written: record batches appended, each reaching the OS in full."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._guard = WriteGuard(str(path))
        self._file = pa.OSFile(str(path), "wb")  # unbuffered: a batch is in the file once written
        self._writer = pa.ipc.new_stream(self._file, schema)

    @property
    def write_error(self) -> OSError | None:
        return self._guard.error

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._guard(lambda: self._writer.write_batch(batch))

    def write_table(self, table: pa.Table) -> None:
        """A table's rows (a shard's, as they stream in)."""
        for batch in table.to_batches():
            self.write_batch(batch)

    def close(self) -> None:
        self._guard(self._writer.close)
        self._file.close()


class ArrowRows:
    """The Recorder's rows as journal batches: one batch per flush."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._rows: list[tuple] = []
        self._target_qps: dict[str, float | None] = {"": None}
        # pyarrow's first conversion loads what it needs (pandas, where installed: a 0.37 s
        # stall on the 2-core machine): done here, before traffic, not in the first flush.
        pa.record_batch([_array([_ZERO[field.type]], field.type) for field in journal.schema],
                        schema=journal.schema)

    @property
    def write_error(self) -> OSError | None:
        return self._journal.write_error

    def write(self, records: Sequence[Record]) -> None:
        self._rows += [record.values() for record in records]

    def flush(self) -> None:
        if not self._rows:
            return
        columns = list(zip(*self._rows))
        self._rows = []
        # The target rate is written as text (records.row); a handful of distinct values.
        rates = self._target_qps
        columns[_TARGET_QPS] = [rates[q] if q in rates else rates.setdefault(q, float(q))
                                for q in columns[_TARGET_QPS]]
        schema = self._journal.schema
        self._journal.write_batch(pa.record_batch(
            [_array(values, field.type) for values, field in zip(columns, schema)],
            schema=schema))

    def close(self) -> None:
        self._journal.close()


def _array(values: Sequence, kind: pa.DataType) -> pa.Array:
    """A column of Python values as Arrow: ints through numpy, 10x faster than pyarrow's own
    conversion of ints as large as Unix ns."""
    if kind == pa.int64():
        return pa.array(np.array(values, np.int64))
    return pa.array(values, kind)


def journal_batches(path: Path, mapped: bool = True
                    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """A journal's schema and its whole batches; a batch cut by a kill ends it. Memory-mapped
    (a reader of a few columns touches only their pages), or read batch by batch (``mapped``
    False: a pass over every column that holds one batch at a time)."""
    source = pa.memory_map(str(path)) if mapped else pa.OSFile(str(path))
    try:
        reader = pa.ipc.open_stream(source)
    except (OSError, pa.ArrowInvalid):  # killed before the schema was written: no rows
        return journal_schema(), iter(())

    def batches() -> Iterator[pa.RecordBatch]:
        while True:
            try:
                yield reader.read_next_batch()
            except StopIteration:
                return
            except (OSError, pa.ArrowInvalid):  # the last batch, cut short
                return
    return reader.schema, batches()


def read_journal(path: Path, names: Sequence[str]) -> pa.Table:
    """The named columns of a journal's whole batches."""
    schema, batches = journal_batches(path)
    return pa.Table.from_batches([b.select(names) for b in batches], schema=pa.schema(
        [schema.field(name) for name in names]))


def seal(journal: Path, parquet: Path, metadata: Mapping[str, object]) -> int:
    """Rewrite ``journal`` as ``parquet`` with ``metadata`` in its footer (key ``fastload.K``
    for each key K, its value as JSON), then remove the journal; returns the rows. Written
    under a temporary name and renamed, so a Parquet file at ``parquet`` is always whole."""
    schema, batches = journal_batches(journal, mapped=False)
    target = parquet_schema(schema).with_metadata(
        {METADATA_PREFIX + key: json.dumps(value) for key, value in metadata.items()})
    partial = parquet.with_name(parquet.name + ".partial")
    rows = 0
    try:
        with pq.ParquetWriter(str(partial), target) as writer:
            pending: list[pa.RecordBatch] = []
            pending_rows = 0
            for batch in batches:
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    _write_group(writer, pending, target)
                    rows, pending, pending_rows = rows + pending_rows, [], 0
            _write_group(writer, pending, target)
            rows += pending_rows
        os.replace(partial, parquet)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    journal.unlink()
    return rows


def _write_group(writer: pq.ParquetWriter, batches: list[pa.RecordBatch],
                 schema: pa.Schema) -> None:
    """Journal batches as Parquet row groups of at most ROW_GROUP_ROWS."""
    if batches:
        writer.write_table(pa.Table.from_batches(batches).cast(schema),
                           row_group_size=ROW_GROUP_ROWS)


def run_metadata(path: Path) -> dict[str, object]:
    """The fastload metadata in a Parquet file's footer, without the prefix (empty for a file
    fastload did not write)."""
    metadata = pq.read_schema(str(path)).metadata or {}
    return {key.decode()[len(METADATA_PREFIX):]: json.loads(value)
            for key, value in metadata.items() if key.decode().startswith(METADATA_PREFIX)}
