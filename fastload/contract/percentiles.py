"""Percentiles as fastload reports them everywhere: nearest rank, the smallest value with at
least q % of the values at or below it (the summary, the report, the status line, the load
certificate), and how low a percentile may be, given how few values it was taken from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastload.contract.noise import fewest_above


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
    """p50, p99 and the largest of a set of delays, in ms; ``p99_floor_ms``: the least the p99
    of what they were sampled from can be (``p99_floor_rank``), so that a limit is judged
    against it and one late sample of thirty is not a late p99."""

    p50_ms: float
    p99_ms: float
    max_ms: float
    count: int
    p99_floor_ms: float

    @classmethod
    def of(cls, histogram_us: Histogram) -> Spread | None:
        """Of a histogram of µs; None when it is empty."""
        n = histogram_us.get_total_count()
        if n == 0:
            return None
        rank = p99_floor_rank(n)
        floor_us = histogram_us.get_value_at_percentile(100 * rank / n) if rank else 0
        return cls(*(value_at(histogram_us, q) / 1000 for q in (50, 99)),
                   histogram_us.get_max_value() / 1000, n, floor_us / 1000)


def p99_floor_rank(n: int) -> int | None:
    """The 1-based rank, in ascending order, of the value that the p99 of what n values were
    drawn from is surely at least (``noise.fewest_above``); None when n values cannot show it."""
    above = fewest_above(n, 99)
    return n - above + 1 if above <= n else None


def value_at(histogram: Histogram, q: int) -> int:
    """The q-th percentile by nearest rank. HdrHistogram rounds the rank (int(q/100 * n + 0.5)),
    one sample lower than nearest rank for small n; asking it for the percentile of the nearest
    rank's count avoids that."""
    n = histogram.get_total_count()
    return histogram.get_value_at_percentile(100 * nearest_rank(n, q) / n)
