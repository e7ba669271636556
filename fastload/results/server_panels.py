"""The server's series the report draws under a run's attainment and p99 over time: which (by
default the reference scheduler's queue per tier and GPU busy fraction; Triton's queue time,
pending requests and GPU utilisation), and each as lines on the run's clock — a gauge's value,
a counter's rate between scrapes."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fastload.results.server_series import rate_over_time
from fastload.scrape.series_file import Series


@dataclass(frozen=True)
class Panel:
    """One server metric drawn in one panel: one line per value of ``by`` (summed over every
    other label and endpoint), or one per label set when ``by`` is None; ``mean`` averages the
    lines into one instead (a busy fraction over GPUs). A counter's name matches with or
    without the _total its samples carry (``scrape.page.Sample``)."""

    metric: str
    title: str
    by: str | None = None
    mean: bool = False

    @property
    def names(self) -> tuple[str, str]:
        """The sample names it draws."""
        return self.metric, self.metric + "_total"


DEFAULT_PANELS = (
    Panel("fastload_scheduler_queue_length", "queue length per tier", by="tier"),
    Panel("fastload_scheduler_gpu_busy_seconds", "GPU busy fraction (mean over GPUs)",
          by="gpu", mean=True),
    Panel("nv_inference_queue_duration_us", "queue µs per s (Triton)", by="model"),
    Panel("nv_inference_pending_request_count", "pending requests (Triton)", by="model"),
    Panel("nv_gpu_utilization", "GPU utilization (Triton)", by="gpu_uuid"),
)


def chosen_panels(names: Sequence[str] | None) -> tuple[Panel, ...]:
    """--server-series: these metrics, one line per label set; None: the defaults."""
    if names is None:
        return DEFAULT_PANELS
    return tuple(Panel(name, name) for name in names)


@dataclass(frozen=True)
class Line:
    label: str
    times_s: np.ndarray
    values: np.ndarray


def panel_lines(panel: Panel, series: Sequence[Series]) -> list[Line]:
    """The panel's lines from a run's series (none: the run did not scrape that metric)."""
    mine = [s for s in series if s.metric in panel.names and len(s.times_ms) > 1]
    if panel.by is None:
        return [Line(_label(s), *_points(s)) for s in mine]
    groups: dict[str, list[Series]] = defaultdict(list)
    for s in mine:
        groups[s.labels.get(panel.by, "")].append(s)
    lines = [Line(f"{panel.by} {key}", *_summed(members))
             for key, members in sorted(groups.items(), key=lambda kv: _natural(kv[0]))]
    if panel.mean and lines:
        times_s, values = _summed_lines(lines)
        return [Line(f"mean of {len(lines)}", times_s, values / len(lines))]
    return lines


def _points(series: Series) -> tuple[np.ndarray, np.ndarray]:
    """Its points in seconds on the run's clock: a counter's rate, else its values."""
    times_ms, values = (rate_over_time(series) if series.is_counter
                        else (series.times_ms, series.values))
    return times_ms / 1000, values


def _summed(members: Sequence[Series]) -> tuple[np.ndarray, np.ndarray]:
    return _summed_lines([Line("", *_points(s)) for s in members])


def _summed_lines(lines: Sequence[Line]) -> tuple[np.ndarray, np.ndarray]:
    """The sum of lines at every time any of them has; a line missing at a time counts 0 there
    (a labelled series appears at its first update)."""
    times_s = np.unique(np.concatenate([line.times_s for line in lines]))
    total = np.zeros(len(times_s))
    for line in lines:
        at = np.searchsorted(times_s, line.times_s)
        total[at] += np.nan_to_num(line.values)
    return times_s, total


def _label(series: Series) -> str:
    return ", ".join(f"{k}={v}" for k, v in series.labels.items()) or series.metric


def _natural(key: str) -> tuple:
    return (0, int(key), "") if key.isdigit() else (1, 0, key)
