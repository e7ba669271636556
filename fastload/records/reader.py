"""The one way fastload's results are read back — by the report, the sweep, the Ray merge and
``bench/`` — from a CSV, a Parquet file or a killed Parquet run's journal (``records.columnar``),
typed once by the column types ``records.row`` declares beside the columns it writes: ints,
floats (NaN where empty), booleans (parsed here, nowhere else) and strings.

pyarrow's CSV reader parses only the columns asked for, on every core, into typed Arrow arrays
(strings dictionary-encoded), handed out as numpy arrays; a string column becomes an object
array that holds each distinct string once. A line with the wrong number of fields (the cut last
line of a killed run) is skipped. The report's seven columns of a 1,000,000-row CSV on the
2-core machine, each reader in a fresh process (``bench/report_scale.py``): this one 0.95 s and
217 MB peak RSS, DuckDB's ``read_csv`` 1.63 s and 449 MB; the ``csv`` module before it (issue
19) 2.0 s and 128 MB. pyarrow is therefore a dependency of fastload itself, not of an extra:
every command that reads results reads through here.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fastload.contract.config import JOURNAL_SUFFIX, PARQUET_SUFFIX
from fastload.records.columnar import ARROW_TYPES, journal_batches, journal_schema, read_journal
from fastload.records.row import COLUMN_TYPES

# Arrow's type for each of COLUMN_TYPES; strings dictionary-encoded (a handful of values each).
_ARROW_TYPES = {**ARROW_TYPES, str: pa.dictionary(pa.int32(), pa.string())}
# Bytes per parse block: on the 2-core machine, reading the report's columns of a 1,000,000-row
# CSV peaked at 211 MB RSS with 1 MB blocks (0.61 s), 238 MB with 4 MB (0.49 s) and 383 MB with
# 16 MB (0.59 s); 63 MB of that is the imports.
BLOCK_BYTES = 1 << 22


class ResultsFileError(ValueError):
    """A file that cannot be read as fastload's results; the message names it and what is
    missing."""


def read_columns(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of a results file with fastload's column names (a run's, a merged
    one, or a bench contender's samples), typed: Parquet (``.parquet``), a journal
    (``.arrows``), else CSV."""
    suffix = path.suffix.lower()
    try:
        if suffix == PARQUET_SUFFIX:
            header = pq.read_schema(path).names
        elif suffix == JOURNAL_SUFFIX:
            header = journal_batches(path)[0].names
        else:
            with open(path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
    except (OSError, pa.ArrowException) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ResultsFileError(f"{path}: cannot read it ({reason})") from None
    if any(name not in header for name in names):
        kind = {PARQUET_SUFFIX: "Parquet file", JOURNAL_SUFFIX: "journal"}.get(suffix, "CSV")
        raise ResultsFileError(f"{path}: not a fastload {kind} with rows (needs columns "
                               f"{', '.join(sorted(names))})")
    try:
        if suffix == PARQUET_SUFFIX:
            table = pq.read_table(path, columns=list(names))
        elif suffix == JOURNAL_SUFFIX:
            table = read_journal(path, names)
        else:
            table = _read_csv(pacsv.ReadOptions(block_size=BLOCK_BYTES), path, names)
    except (OSError, pa.ArrowException) as exc:
        raise ResultsFileError(f"{path}: cannot read it ({exc})") from None
    return numpy_columns(table, names)


def parse_table(data: bytes, header: Sequence[str], names: Sequence[str]) -> pa.Table:
    """The named columns of CSV rows without a header line (a Ray shard's, as they stream in),
    whose columns are ``header``, typed as a journal's (``columnar.journal_schema``)."""
    if not data.strip():
        return journal_schema(names).empty_table()
    return _read_csv(pacsv.ReadOptions(column_names=list(header)), pa.BufferReader(data), names,
                     ARROW_TYPES)


def numpy_columns(table: pa.Table, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of a table of fastload's columns, as ``read_columns`` gives them."""
    return {name: _numpy(name, table.column(name)) for name in names}


def _read_csv(read_options: pacsv.ReadOptions, source, names: Sequence[str],
              types: dict[type, pa.DataType] = _ARROW_TYPES) -> pa.Table:
    convert = pacsv.ConvertOptions(
        include_columns=list(names), true_values=["True"], false_values=["False"],
        column_types={name: types[COLUMN_TYPES[name]] for name in names},
        strings_can_be_null=False, quoted_strings_can_be_null=False)
    return pacsv.read_csv(source, read_options,
                          pacsv.ParseOptions(invalid_row_handler=lambda _row: "skip"), convert)


def _numpy(name: str, column: pa.ChunkedArray) -> np.ndarray:
    """One column as numpy: NaN for an empty float, each distinct string one object."""
    kind = COLUMN_TYPES[name]
    if kind is str:
        if not pa.types.is_dictionary(column.type):  # a journal's plain strings
            column = pc.dictionary_encode(column)
        chunks = column.unify_dictionaries().chunks
        if not chunks:
            return np.array([], dtype=object)
        strings = np.array(chunks[0].dictionary.to_pylist(), dtype=object)
        return strings[np.concatenate([c.indices.to_numpy(zero_copy_only=False)
                                       for c in chunks]).astype(np.int64)]
    if kind is float:
        column = pc.fill_null(column, np.nan)
    return column.to_numpy()
