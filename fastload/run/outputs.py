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

from fastload.contract.exits import OutputError

# A write buffer of this size holds a few hundred rows; the recorder flushes every period anyway.
_CSV_BUFFER_BYTES = 1 << 16


@dataclass
class RunOutputs:
    metrics_csv: Path
    summary_json: Path
    loadgen_dir: Path
    # What prepare() made, in order, so that discard() removes exactly that.
    created: list[Path] = field(default_factory=list)

    @classmethod
    def prepare(cls, metrics_csv: Path, summary_json: Path, loadgen_dir: Path,
                server_metrics_csv: Path | None = None) -> RunOutputs:
        """Create every folder and file the run writes, without touching existing contents
        (``server_metrics_csv``: when the run scrapes a server's metrics)."""
        outputs = cls(metrics_csv, summary_json, loadgen_dir)
        try:
            outputs._make_file(metrics_csv, "--metrics-csv")
            outputs._make_file(summary_json, "--metrics-csv (its .json summary)")
            if server_metrics_csv is not None:
                outputs._make_file(server_metrics_csv, "--metrics-csv (its server metrics)")
            outputs._make_dir(loadgen_dir, "--output-dir")
            try:
                tempfile.TemporaryFile(dir=loadgen_dir).close()
            except OSError as exc:
                raise OutputError(f"--output-dir {loadgen_dir}: cannot write in it "
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
        return open(self.metrics_csv, "w", newline="", encoding="utf-8",
                    buffering=_CSV_BUFFER_BYTES)

    def discard(self) -> None:
        """Remove what prepare() created (nothing was sent, so nothing is lost)."""
        for path in reversed(self.created):
            try:
                path.rmdir() if path.is_dir() else os.unlink(path)
            except OSError:
                pass  # something else wrote there meanwhile: leave it
        self.created.clear()
