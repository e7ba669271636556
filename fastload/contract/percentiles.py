"""Percentiles as fastload reports them everywhere: nearest rank, the smallest value with at
least q % of the values at or below it (the summary, the report, the status line, the load
certificate)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


def nearest_rank(n: int, q: int) -> int:
    """The 1-based rank of the q-th percentile of n values: the ceil(q * n / 100)-th (at least
    the first); computed in integers, so no float rounding moves it."""
    return max(1, -(-q * n // 100))


class Histogram(Protocol):
    """What is read of an HdrHistogram (hdrh's)."""

    def get_total_count(self) -> int: ...

    def get_value_at_percentile(self, percentile: float) -> int: ...

    def get_max_value(self) -> int: ...


@dataclass(frozen=True)
class Spread:
    """p50, p99 and the largest of a set of delays, in ms."""

    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, histogram_us: Histogram) -> Spread | None:
        """Of a histogram of µs; None when it is empty."""
        n = histogram_us.get_total_count()
        if n == 0:
            return None
        return cls(*(value_at(histogram_us, q) / 1000 for q in (50, 99)),
                   histogram_us.get_max_value() / 1000)


def value_at(histogram: Histogram, q: int) -> int:
    """The q-th percentile by nearest rank. HdrHistogram rounds the rank (int(q/100 * n + 0.5)),
    one sample lower than nearest rank for small n; asking it for the percentile of the nearest
    rank's count avoids that."""
    n = histogram.get_total_count()
    return histogram.get_value_at_percentile(100 * nearest_rank(n, q) / n)
