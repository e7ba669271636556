"""Run statistics in bounded memory, updated record by record as the writer streams them.

Statistics are kept per class (and per schedule phase) as records stream past — counts, issue span,
an HdrHistogram of latencies — never as a list of samples, so a soak test of a day costs what a
minute does. Percentiles are HdrHistogram's nearest-rank values with 3 significant digits:
within 0.1 % of ``numpy.percentile(latencies, q, method="inverted_cdf")`` over the CSV's rows.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from hdrh.histogram import HdrHistogram

from fastload.contract.percentiles import value_at
from fastload.contract.workload import RequestClass
from fastload.records.row import ANSWERED, STATUS_CLIENT_OVERLOAD, Record
from fastload.results.arrival_fit import GapFit

# Latencies are recorded in µs from 1 µs to a day, 3 significant digits (~200 KB a class).
_HISTOGRAM_RANGE_US = (1, 86_400_000_000, 3)
PERCENTILES = (50, 95, 99)


def _in_range_us(ns: int) -> int:
    """ns as µs clamped into the histograms' range: a latency beyond a day counts as a day."""
    return min(max(ns // 1000, 1), _HISTOGRAM_RANGE_US[1])


class ClassStats:
    """What the summary needs of one class, updated record by record."""

    __slots__ = ("count", "met", "errors", "first_issue_ns", "last_issue_ns", "latency_us")

    def __init__(self) -> None:
        self.count = self.met = self.errors = 0
        self.first_issue_ns = math.inf
        self.last_issue_ns = -math.inf
        self.latency_us = HdrHistogram(*_HISTOGRAM_RANGE_US)

    def add(self, record: Record) -> None:
        self.count += 1
        issue_ns = record.issue_mono_ns
        if issue_ns < self.first_issue_ns:
            self.first_issue_ns = issue_ns
        if issue_ns > self.last_issue_ns:
            self.last_issue_ns = issue_ns
        if record.status in ANSWERED:
            self.latency_us.record_value(_in_range_us(record.latency_ns))
            self.met += record.slo_met
        else:
            self.errors += 1

    def merge(self, other: ClassStats) -> None:
        self.count += other.count
        self.met += other.met
        self.errors += other.errors
        self.first_issue_ns = min(self.first_issue_ns, other.first_issue_ns)
        self.last_issue_ns = max(self.last_issue_ns, other.last_issue_ns)
        self.latency_us.add(other.latency_us)

    @property
    def issue_span_s(self) -> float:
        return max(0.0, (self.last_issue_ns - self.first_issue_ns) / 1e9) if self.count else 0.0

    @property
    def achieved_qps(self) -> float:
        """The rate of this class's own issues: its count - 1 gaps over its first..last issue."""
        span_s = self.issue_span_s
        return (self.count - 1) / span_s if span_s > 0 else math.nan

    def percentiles_ms(self) -> tuple[float, ...]:
        """Nearest rank: the smallest latency with at least q % of samples at or below it."""
        if self.latency_us.get_total_count() == 0:
            return (math.nan,) * len(PERCENTILES)
        return tuple(value_at(self.latency_us, q) / 1000 for q in PERCENTILES)


class PhaseStats(ClassStats):
    """A schedule phase's statistics, with SLO attainment per tier."""

    __slots__ = ("by_tier",)

    def __init__(self) -> None:
        super().__init__()
        self.by_tier: dict[int, list[int]] = {}  # tier -> [count, met]

    def add(self, record: Record) -> None:
        super().add(record)
        counts = self.by_tier.setdefault(record.cls.tier, [0, 0])
        counts[0] += 1
        counts[1] += record.slo_met


class RunStats:
    """Per-class (and per-phase) statistics of a run; ``add`` is the Recorder's consumer."""

    def __init__(self, classes: Iterable[RequestClass], phase_count: int = 1) -> None:
        self.by_class: dict[RequestClass, ClassStats] = {c: ClassStats() for c in classes}
        # Per-phase rows only mean something with more than one phase.
        self.by_phase = [PhaseStats() for _ in range(phase_count)] if phase_count > 1 else []
        # The client's side of the samples, for the load certificate: the send lag of every
        # sample sent, the samples refused at --max-inflight, and how late samples were issued
        # against a plan that says when (the timer's).
        self.send_lag_us = HdrHistogram(*_HISTOGRAM_RANGE_US)
        self.client_overload = 0
        self.lateness_us = HdrHistogram(*_HISTOGRAM_RANGE_US)
        self._planned_mono_ns: dict[str, np.ndarray] = {}
        # Whether the issue times follow their planned law, once the run's start is known.
        self.fit: GapFit | None = None

    def expect(self, issuer: str, planned_mono_ns: np.ndarray) -> None:
        """Measure the issue lateness of ``issuer``'s samples against these planned times
        (CLOCK_MONOTONIC ns), indexed by each sample's source id."""
        self._planned_mono_ns[issuer] = planned_mono_ns

    def add(self, records: Sequence[Record]) -> None:
        by_class, by_phase, planned = self.by_class, self.by_phase, self._planned_mono_ns
        for record in records:
            stats = by_class.get(record.cls)
            if stats is None:
                stats = by_class[record.cls] = ClassStats()
            stats.add(record)
            if by_phase:
                by_phase[record.phase].add(record)
            send_lag_ns = record.send_lag_ns
            if send_lag_ns >= 0:
                self.send_lag_us.record_value(_in_range_us(send_lag_ns))
            elif record.status == STATUS_CLIENT_OVERLOAD:
                self.client_overload += 1
            if planned and (times := planned.get(record.issuer)) is not None:
                self.lateness_us.record_value(_in_range_us(
                    record.issue_mono_ns - int(times[record.loadgen_sample_id])))
        if self.fit is not None:
            self.fit.add(np.fromiter((r.issue_mono_ns for r in records), np.int64,
                                     len(records)))

    def overall(self) -> ClassStats:
        total = ClassStats()
        for stats in self.by_class.values():
            total.merge(stats)
        return total
