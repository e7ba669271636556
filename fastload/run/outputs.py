"""A run's output files and folders: made before any traffic, taken back if no traffic starts.

Writability is proved by creating things, not by asking ``os.access``: as root, access() says yes
to paths under /proc, read-only mounts and full disks alike.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from fastload.contract.config import PARQUET_FORMAT, RunConfig
from fastload.contract.exits import OutputError
from fastload.records.columnar import ArrowRows, Journal, journal_schema
from fastload.records.recorder import CsvRows, RowSink
from fastload.records.row import CSV_COLUMNS

# A write buffer of this size holds a few hundred rows; the recorder flushes every period anyway.
_CSV_BUFFER_BYTES = 1 << 16


@dataclass
class RunOutputs:
    # What rows stream to while the run goes: the CSV, or a Parquet run's journal.
    records: Path
    summary_json: Path
    loadgen_dir: Path
    parquet: Path | None = None  # where a Parquet run's journal is sealed when it ends
    # What prepare() made, in order, so that discard() removes exactly that.
    created: list[Path] = field(default_factory=list)

    @classmethod
    def prepare(cls, config: RunConfig) -> RunOutputs:
        """Create every folder and file the run writes, without touching existing contents."""
        parquet = config.output_format == PARQUET_FORMAT
        outputs = cls(config.journal_path if parquet else config.metrics_csv,
                      config.summary_json, config.output_dir,
                      config.records_path if parquet else None)
        try:
            outputs._make_file(outputs.records,
                               "--metrics-csv (its journal)" if parquet else "--metrics-csv")
            outputs._make_file(outputs.summary_json, "--metrics-csv (its .json summary)")
            if config.scrapes:
                outputs._make_file(config.server_metrics_csv,
                                   "--metrics-csv (its server metrics)")
            outputs._make_dir(outputs.loadgen_dir, "--output-dir")
            try:
                tempfile.TemporaryFile(dir=outputs.loadgen_dir).close()
            except OSError as exc:
                raise OutputError(f"--output-dir {outputs.loadgen_dir}: cannot write in it "
                                  f"({exc.strerror})") from None
        except OutputError:
            outputs.discard()
            raise
        return outputs

    def _make_dir(self, path: Path, flag: str) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                if not directory.is_dir():
                    raise OutputError(f"{flag}: {directory} is not a folder") from None
                continue
            except OSError as exc:
                raise OutputError(f"{flag}: cannot create {directory} ({exc.strerror})") \
                    from None
            self.created.append(directory)
        if not path.is_dir():
            raise OutputError(f"{flag}: {path} is not a folder")

    def _make_file(self, path: Path, flag: str) -> None:
        self._make_dir(path.parent, flag)
        existed = path.exists()
        try:
            # Append mode proves the file can be written without truncating an earlier run's.
            with open(path, "a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise OutputError(f"{flag} {path}: cannot write it ({exc.strerror})") from None
        if not existed:
            self.created.append(path)

    def open_csv(self) -> TextIO:
        """The CSV, emptied: called once traffic is about to start."""
        return open(self.records, "w", newline="", encoding="utf-8",
                    buffering=_CSV_BUFFER_BYTES)

    def open_journal(self, columns: tuple[str, ...]) -> Journal:
        """A Parquet run's journal, emptied, and no earlier run's Parquet file beside it."""
        assert self.parquet is not None
        self.parquet.unlink(missing_ok=True)
        return Journal(self.records, journal_schema(columns))

    def open_rows(self) -> RowSink:
        """Where the Recorder's rows go: the CSV or the journal."""
        if self.parquet is None:
            return CsvRows(self.open_csv())
        return ArrowRows(self.open_journal(CSV_COLUMNS))

    def discard(self) -> None:
        """Remove what prepare() created (nothing was sent, so nothing is lost)."""
        for path in reversed(self.created):
            try:
                path.rmdir() if path.is_dir() else os.unlink(path)
            except OSError:
                pass  # something else wrote there meanwhile: leave it
        self.created.clear()
