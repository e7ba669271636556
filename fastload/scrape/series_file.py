"""``<csv stem>.server-metrics.csv`` (``contract.config.server_metrics_path``): every scraped
sample in long form, one row each, written as the scrapes come (a killed run keeps what was
scraped), and the one reader of it.

Columns: ``time_ms`` (the scrape's midpoint on the run's clock: ms since GO, negative before
it), ``endpoint`` (the URL scraped), ``metric`` (the sample's name, ``page.Sample``), ``type`` (its
family's: counter, gauge, histogram, summary, unknown...), ``labels`` (a JSON object, keys
sorted) and ``value``.
"""
from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np

from fastload.scrape.page import Sample

COLUMNS = ("time_ms", "endpoint", "metric", "type", "labels", "value")


class SeriesWriter:
    """Rows of scraped samples, each scrape's in one write to an unbuffered file: a killed run
    leaves whole scrapes behind. Endpoints' threads share it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self._text = io.StringIO()
        self._rows = csv.writer(self._text)
        self._write([COLUMNS])

    def write(self, endpoint: str, time_ms: float, samples: Sequence[Sample]) -> None:
        self._write((f"{time_ms:.3f}", endpoint, s.metric, s.kind, s.labels, repr(s.value))
                    for s in samples)

    def _write(self, rows: Iterable[Sequence[str]]) -> None:
        with self._lock:
            self._text.seek(0)
            self._text.truncate()
            self._rows.writerows(rows)
            self._file.write(self._text.getvalue().encode("utf-8"))


@dataclass(frozen=True)
class Series:
    """One series (endpoint, metric, labels) over the run, in scrape order."""

    endpoint: str
    metric: str
    kind: str
    labels: dict[str, str]
    times_ms: np.ndarray
    values: np.ndarray

    @property
    def is_counter(self) -> bool:
        """Whether its value only grows (a counter's, or a histogram's or summary's count and
        sum): its rate tells, not its value."""
        return (self.kind == "counter" or (self.kind in ("histogram", "summary", "gaugehistogram")
                                           and self.metric.endswith(("_count", "_sum"))))

    def describe(self) -> str:
        """The series as Prometheus writes it: name{label="value",...}."""
        labels = ",".join(f'{k}="{v}"' for k, v in self.labels.items())
        return f"{self.metric}{{{labels}}}" if labels else self.metric


class SeriesFormatError(ValueError):
    """A file that is not a server-metrics file; the message names it."""


def read_series(path: Path, metrics: Container[str] | None = None) -> list[Series]:
    """The series of ``path`` (those of the named metrics only, if given), in the order their
    first samples were written."""
    columns: dict[tuple[str, str, str], tuple[str, list[float], list[float]]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as file:
            rows = csv.reader(file)
            if tuple(next(rows, ())) != COLUMNS:
                raise SeriesFormatError(f"{path}: not a fastload server-metrics file (needs "
                                        f"columns {', '.join(COLUMNS)})")
            for row in rows:
                if len(row) != len(COLUMNS):  # a run killed mid-write: its last scrape
                    continue
                time_ms, endpoint, metric, kind, labels, value = row
                if metrics is not None and metric not in metrics:
                    continue
                _, times, values = columns.setdefault((endpoint, metric, labels), (kind, [], []))
                times.append(float(time_ms))
                values.append(float(value))
    except OSError as exc:
        raise SeriesFormatError(f"{path}: cannot read it ({exc.strerror})") from None
    except SeriesFormatError:
        raise
    except ValueError as exc:
        raise SeriesFormatError(f"{path}: a row cannot be read ({exc})") from None
    return [Series(endpoint, metric, kind, json.loads(labels), np.array(times), np.array(values))
            for (endpoint, metric, labels), (kind, times, values) in columns.items()]
