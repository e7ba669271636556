"""What the server's scraped metrics say: per series, a few figures over the run for the summary
JSON (min / mean / max of a gauge, the rate of a counter), and a counter's rate between scrapes,
for the report's panels. Read from the run's server-metrics file, never from memory: what a
killed run scraped reads the same way."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fastload.scrape.scraper import EndpointReport
from fastload.scrape.series_file import Series, read_series

# Samples the JSON leaves to the file: a histogram's buckets (its _count and _sum tell the rate)
# and the creation times some clients export beside every counter.
_LEFT_TO_THE_FILE = ("_bucket", "_created")


@dataclass(frozen=True)
class Scraped:
    """A run's scraping: its file and each endpoint's report (None: the scraper died)."""

    path: Path
    reports: Sequence[EndpointReport] | None

    def lines(self) -> list[str]:
        """The lines the run prints about it."""
        if self.reports is None:
            return [f"server metrics: the scraping process died; {self.path} holds what it "
                    f"scraped"]
        return [f"server metrics: {r.endpoint}: {r.scrapes} scrapes, {r.failed} failed"
                + (f" (last: {r.last_error})" if r.failed else "") + f" -> {self.path}"
                for r in self.reports]

    def summary(self) -> list[dict[str, Any]]:
        """Per endpoint, its scrape counts and a few figures per series, for the JSON."""
        series = read_series(self.path)
        # Without reports (the scraper died), the endpoints the file holds, without counts.
        counts = {r.endpoint: {"scrapes": r.scrapes, "failed": r.failed,
                               "last_error": r.last_error} for r in self.reports or ()}
        endpoints = list(counts) if self.reports is not None else list(
            dict.fromkeys(s.endpoint for s in series))
        return [{"endpoint": endpoint, "file": str(self.path), **counts.get(endpoint, {}),
                 "series": [{"metric": s.metric, "labels": s.labels, "type": s.kind,
                             **figures(s)} for s in series if s.endpoint == endpoint
                            and not s.metric.endswith(_LEFT_TO_THE_FILE)]}
                for endpoint in endpoints]


def figures(series: Series) -> dict[str, float | None]:
    """A counter's mean rate per second from its first scrape (just before GO) to its last
    (just after the drain); else min, mean and max over those scrapes."""
    if series.is_counter:
        span_s = (series.times_ms[-1] - series.times_ms[0]) / 1000
        return {"rate_per_s": float(increases(series.values).sum() / span_s) if span_s > 0
                else None}
    return {"min": float(series.values.min()), "mean": float(series.values.mean()),
            "max": float(series.values.max())}


def increases(values: np.ndarray) -> np.ndarray:
    """A counter's increase between consecutive scrapes; where it fell (the server restarted
    and counts from 0 again), its new value is the increase."""
    steps = np.diff(values)
    return np.where(steps < 0, values[1:], steps)


def rate_over_time(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """A counter's rate per second between consecutive scrapes, at their midpoints (ms)."""
    seconds = np.diff(series.times_ms) / 1000
    return ((series.times_ms[1:] + series.times_ms[:-1]) / 2,
            increases(series.values) / np.where(seconds > 0, seconds, np.nan))
