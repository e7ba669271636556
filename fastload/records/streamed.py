"""Files that rows reach as they come — the CSV, or the Parquet run's journal — and the one rule
they share: after a failed write (disk full) nothing more is written, so that the run goes on and
its summary counts every sample; ``error`` says what failed."""
from __future__ import annotations

import sys
from typing import Callable, TextIO


class WriteGuard:
    """Runs writes to ``name`` until one fails; then says so once and runs no more."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: OSError | None = None

    def __call__(self, write: Callable[[], object]) -> None:
        if self.error is not None:
            return
        try:
            write()
        except OSError as exc:
            self.error = exc
            print(f"fastload: error: cannot write {self.name} ({exc.strerror}); the run goes on "
                  f"and its summary counts every sample", file=sys.stderr, flush=True)


class StreamedCsv:
    """A CSV file that rows reach as they come: ``flush`` hands them to the OS."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._guard = WriteGuard(file.name)

    @property
    def write_error(self) -> OSError | None:
        return self._guard.error

    def write(self, text: str) -> None:
        self._guard(lambda: self._file.write(text))

    def flush(self) -> None:
        self._guard(self._file.flush)

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:
            self._guard.error = self._guard.error or exc
