"""The one way fastload's CSV is read back — by the report, the Ray merge and ``bench/`` —
typed once by the column types ``records.row`` declares beside the columns it writes: ints,
floats (NaN where empty), booleans (parsed here, nowhere else) and strings.

Only the columns asked for are kept, as numpy arrays, so a reader pays for what it uses. The
``csv`` module is enough at today's sizes: the report's seven columns of a 1,000,000-row CSV
read in 2.0 s with 128 MB peak RSS on the 2-core machine (``csv.DictReader`` alone, as the report
read it before: 3.9 s and 1.4 GB). A columnar format and reader are issue 23's, behind the same
two functions.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fastload.records.row import COLUMN_TYPES

# Rows whose text is held at once before it is typed: about 30 MB of text for seven columns.
ROWS_PER_CHUNK = 65536


class CsvFormatError(ValueError):
    """A file that cannot be read as fastload's CSV; the message names it and what is missing."""


def read_columns(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of a CSV with fastload's column names (a run's, a merged one, or a
    bench contender's samples), typed."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = csv.reader(f)
            header = next(rows, [])
            missing = [name for name in names if name not in header]
            if missing:
                raise CsvFormatError(f"{path}: not a fastload CSV with rows (needs columns "
                                     f"{', '.join(sorted(names))})")
            return parse_columns(rows, header, names)
    except OSError as exc:
        raise CsvFormatError(f"{path}: cannot read it ({exc.strerror})") from None


def parse_columns(rows: Iterable[Sequence[str]], header: Sequence[str], names: Sequence[str]
                  ) -> dict[str, np.ndarray]:
    """The named columns of rows split into fields (``csv.reader``'s), whose columns are
    ``header``; text is typed every ``ROWS_PER_CHUNK`` rows, so only one chunk of it is held."""
    indices = [header.index(name) for name in names]
    chunks: list[list[np.ndarray]] = [[] for _ in names]
    texts: list[list[str]] = [[] for _ in names]
    appends = [column.append for column in texts]
    # Each string value is kept once: a column of a million statuses holds a handful of strings.
    seen: dict[str, str] = {}

    def type_chunk() -> None:
        for name, column, typed_chunks in zip(names, texts, chunks):
            typed_chunks.append(_typed(name, column, seen))
            column.clear()

    for count, row in enumerate(rows, 1):
        for append, index in zip(appends, indices):
            append(row[index])
        if count % ROWS_PER_CHUNK == 0:
            type_chunk()
    type_chunk()
    return {name: np.concatenate(typed_chunks) for name, typed_chunks in zip(names, chunks)}


def _typed(name: str, texts: Sequence[str], seen: dict[str, str]) -> np.ndarray:
    """One column's text as an array of its type; strings go through ``seen``, so that equal
    ones are one object."""
    kind = COLUMN_TYPES[name]
    if kind is bool:
        return np.array([text == "True" for text in texts], dtype=bool)
    if kind is int:
        return np.array(texts, dtype=np.int64)
    if kind is float:
        return np.array([float(text) if text else np.nan for text in texts], dtype=np.float64)
    return np.array([seen.setdefault(text, text) for text in texts], dtype=object)
