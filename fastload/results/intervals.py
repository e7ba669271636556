"""95 % confidence intervals for the sweep: over repeats, over a run's 1-second batches, and for
the paired difference of two conditions run at the same seeds.

Repeats are independent runs, so the mean of N of them gets Student's t interval (N - 1 degrees
of freedom). A single run's samples are not independent (a queue carries over from one to the
next), so with N = 1 the interval comes from batch means: the statistic per 1-second bin of issue
time, and the t interval over those bins, which is wide when the bins differ, as a congested run's
do. Paired conditions (as-is and equal priority signals at the same seeds) share each repeat's
arrivals, so their difference is judged per pair: its own t interval, narrower than the two
intervals side by side.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np

REPEATS = "repeats"  # the interval's kind: t over independent repeats
BATCHES = "1 s batch means"  # t over a single run's 1-second bins
BATCH_S = 1.0


def t_quantile(confidence: float, dof: int) -> float:
    """The t with P(|T| <= t) = ``confidence`` for Student's t with ``dof`` degrees of freedom
    (bisection on the exact CDF)."""
    low, high = 0.0, 1.0
    while _t_central(high, dof) < confidence:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_central(middle, dof) < confidence else (low, middle)
    return (low + high) / 2


def _t_central(t: float, dof: int) -> float:
    """P(|T| <= t), by the finite series for integer degrees of freedom (Abramowitz and Stegun
    26.7.3 and 26.7.4)."""
    theta = math.atan(t / math.sqrt(dof))
    cos2 = math.cos(theta) ** 2
    if dof % 2:  # odd: 2/pi (theta + sin cos (1 + 2/3 cos^2 + 2·4/(3·5) cos^4 + ...))
        total, term = 0.0, 1.0
        for k in range(1, (dof - 1) // 2 + 1):
            total += term
            term *= cos2 * (2 * k) / (2 * k + 1)
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    total, term = 0.0, 1.0  # even: sin (1 + 1/2 cos^2 + 1·3/(2·4) cos^4 + ...)
    for k in range(1, dof // 2 + 1):
        total += term
        term *= cos2 * (2 * k - 1) / (2 * k)
    return math.sin(theta) * total


@dataclass(frozen=True)
class Interval:
    """A mean with its 95 % confidence interval; ``kind`` says what it is taken over."""

    mean: float | None
    low: float | None
    high: float | None
    n: int  # the repeats (or bins) it is taken over
    kind: str

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def mean_interval(values: Sequence[float | None], kind: str,
                  confidence: float = 0.95) -> Interval:
    """The mean of ``values`` (None ones left out) and its t interval; no interval from fewer
    than two."""
    known = [v for v in values if v is not None and math.isfinite(v)]
    n = len(known)
    if n == 0:
        return Interval(None, None, None, 0, kind)
    mean = sum(known) / n
    if n < 2:
        return Interval(mean, None, None, n, kind)
    sd = math.sqrt(sum((v - mean) ** 2 for v in known) / (n - 1))
    half = t_quantile(confidence, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, kind)


def recentred(interval: Interval, mean: float | None) -> Interval:
    """The interval moved onto ``mean``, its width kept: a run's own figure (its attainment over
    all its samples) with the width its batches give."""
    if interval.low is None or mean is None:
        return replace(interval, mean=mean)
    half = (interval.high - interval.low) / 2
    return replace(interval, mean=mean, low=mean - half, high=mean + half)


def clipped(interval: Interval, lowest: float, highest: float) -> Interval:
    """The interval kept within what the figure can be (a share within 0-100 %)."""
    if interval.low is None:
        return interval
    return replace(interval, low=max(interval.low, lowest), high=min(interval.high, highest))


def paired_difference(first: Sequence[float | None], second: Sequence[float | None],
                      kind: str, confidence: float = 0.95) -> Interval:
    """first − second, pair by pair (a pair with a None is left out), and its t interval."""
    return mean_interval([a - b if a is not None and b is not None else None
                          for a, b in zip(first, second)], kind, confidence)


def batch_attainment(issue_mono_ns: np.ndarray, slo_met: np.ndarray, mask: np.ndarray
                     ) -> list[float | None]:
    """SLO attainment % of the masked samples per BATCH_S of issue time since the run's first
    issue (of all its samples, so that two runs of one seed batch alike); None for a batch
    without masked samples."""
    bins = np.floor((issue_mono_ns - issue_mono_ns.min()) / (BATCH_S * 1e9)).astype(np.int64)
    counts = np.bincount(bins[mask], minlength=bins.max() + 1)
    hits = np.bincount(bins[mask], weights=slo_met[mask].astype(bool), minlength=bins.max() + 1)
    return [100.0 * h / c if c else None for h, c in zip(hits, counts)]


def point_interval(values: Sequence[float | None],
                   batches: Callable[[], list[float | None]] | None) -> Interval:
    """A sweep point's figure: the mean over its repeats with their t interval or, for one run,
    its own figure with the width its 1-second ``batches`` give (None: no interval)."""
    if len(values) > 1:
        return mean_interval(values, REPEATS)
    if batches is None:
        return Interval(values[0], None, None, 1, "one run")
    return recentred(mean_interval(batches(), BATCHES), values[0])


def paired_interval(first: Sequence[float | None], second: Sequence[float | None],
                    batches: Callable[[], tuple[list[float | None], list[float | None]]] | None,
                    confidence: float = 0.95) -> Interval:
    """first − second at a sweep point: over repeats paired by seed (the two lists aligned), or,
    for one run each, their difference with the width of the batch-by-batch differences."""
    if len(first) > 1 and len(second) > 1:
        return paired_difference(first, second, REPEATS, confidence)
    a, b = first[0], second[0]
    difference = a - b if a is not None and b is not None else None
    if batches is None:
        return Interval(difference, None, None, 1, "one run")
    return recentred(paired_difference(*batches(), BATCHES, confidence), difference)
