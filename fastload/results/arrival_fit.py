"""Whether a run's issue times follow the law they were drawn from: a goodness-of-fit p-value of
the gaps between issues, for the load certificate.

Time rescaling makes every planned process one law: with Λ(t) the expected arrivals by t, the
gaps Λ(tᵢ₊₁) − Λ(tᵢ) of a Poisson process (LoadGen's, at a constant rate or on a schedule) are
exponential with mean 1, and those of the timer's gamma renewal process (``--burstiness K``) are
gamma of shape K and mean 1. Gaps shorter than RESOLUTION_S are left out, since issue stamps
closer than that say more about the issuing thread than about the plan (the timer issues arrivals
already due under one stamp; LoadGen's issue thread bunches gaps under 0.5-1 ms: on the 2-core
machine a 500 QPS run's 10,053 gaps gave p = 1e-10 above 0.2 ms and 0.10 above 1 ms, a schedule
to 600 QPS p = 0.004 above 0.5 ms and 0.78 above 1 ms), and each gap is judged by its law
conditional on being longer (``(F(x) − F(c)) / (1 − F(c))``, uniform under the plan). Those
values are counted in FIT_BINS bins and tested with chi-square.

Records arrive in completion order, not issue order: issue times wait in a buffer until no
record issued before them can still come (the request timeout and a margin), so memory is
bounded by the rate times that horizon, not by the run's length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastload.contract.config import RunConfig
from fastload.contract.rates import RateSchedule

FIT_BINS = 50
RESOLUTION_S = 0.001
# A record is written at most this long after its issue beyond its gRPC deadline: the watchdog's
# grace, the writer's flush period and the send lag of a client that is behind.
_HORIZON_MARGIN_S = 5.0
# Issue times folded into the bins once this many wait (sorting them in one go).
_FOLD_EVERY = 8192
# Points of the table the gamma law's CDF is read from, and its smallest positive x.
_TABLE_POINTS = 4000
_TABLE_LOW = 1e-9


@dataclass(frozen=True)
class IssueFit:
    """The goodness of fit of a run's issue gaps to their planned law."""

    law: str  # "exponential" (Poisson) or "gamma, shape K"
    gaps: int  # gaps judged: longer than the resolution
    short_gaps: int  # gaps at or under RESOLUTION_S, left out
    resolution_ms: float
    chi_square: float | None
    p_value: float | None  # None: too few gaps (under 5 per bin)


class GapFit:
    """Issue times in, any order within the horizon; the fit of their gaps out."""

    def __init__(self, schedule: RateSchedule, shape: float, start_mono_ns: int,
                 horizon_s: float) -> None:
        self._schedule = schedule
        self._shape = shape
        self._start_mono_ns = start_mono_ns
        self._horizon_ns = int(horizon_s * 1e9)
        self._end_s = np.inf if schedule.is_constant else schedule.duration_ms / 1000
        self._table_x, self._table_f = _cdf_table(shape)
        self._waiting: list[np.ndarray] = []
        self._waiting_count = 0
        self._latest_ns = 0  # the latest issue time seen
        self._last_s: float | None = None  # the latest issue time folded in, s from start
        self._counts = np.zeros(FIT_BINS, dtype=np.int64)
        self._short = 0

    @property
    def waiting(self) -> int:
        """Issue times not yet folded into the bins: bounded by the rate times the horizon."""
        return self._waiting_count

    def add(self, issue_mono_ns: np.ndarray) -> None:
        """Issue times of records just written."""
        if len(issue_mono_ns) == 0:
            return
        self._waiting.append(issue_mono_ns)
        self._waiting_count += len(issue_mono_ns)
        self._latest_ns = max(self._latest_ns, int(issue_mono_ns.max()))
        if self._waiting_count >= _FOLD_EVERY:
            self._fold(final=False)

    def result(self) -> IssueFit:
        """The fit of every gap (folds in what still waits)."""
        self._fold(final=True)
        gaps = int(self._counts.sum())
        law = "exponential" if self._shape == 1 else f"gamma, shape {self._shape:g}"
        if gaps < 5 * FIT_BINS:
            return IssueFit(law, gaps, self._short, RESOLUTION_S * 1e3, None, None)
        expected = gaps / FIT_BINS
        statistic = float(((self._counts - expected) ** 2).sum() / expected)
        return IssueFit(law, gaps, self._short, RESOLUTION_S * 1e3, statistic,
                        chi_square_p(statistic, FIT_BINS - 1))

    def _fold(self, final: bool) -> None:
        """Bin the gaps of the issue times no earlier record can still precede."""
        if not self._waiting:
            return
        times = np.sort(np.concatenate(self._waiting))
        ready = (len(times) if final
                 else int(np.searchsorted(times, self._latest_ns - self._horizon_ns, "right")))
        rest = times[ready:]
        self._waiting, self._waiting_count = ([rest], len(rest)) if len(rest) else ([], 0)
        seconds = (times[:ready] - self._start_mono_ns) / 1e9
        if self._last_s is not None:
            # One that came after its place was folded (later than the horizon) is left out.
            seconds = np.concatenate(([self._last_s], seconds[seconds >= self._last_s]))
        if len(seconds) == 0:
            return
        self._last_s = float(seconds[-1])
        self._bin(seconds[:-1], seconds[1:])

    def _bin(self, before_s: np.ndarray, after_s: np.ndarray) -> None:
        long = (after_s - before_s > RESOLUTION_S) & (after_s <= self._end_s)
        self._short += int(np.count_nonzero(after_s - before_s <= RESOLUTION_S))
        before_s, after_s = before_s[long], after_s[long]
        start = self._cumulative(before_s)
        gap = self._cumulative(after_s) - start
        shortest = self._cumulative(before_s + RESOLUTION_S) - start
        below = self._cdf(shortest)
        with np.errstate(invalid="ignore", divide="ignore"):
            uniform = (self._cdf(gap) - below) / (1 - below)
        uniform = uniform[np.isfinite(uniform)]
        bins = np.minimum((np.clip(uniform, 0, 1) * FIT_BINS).astype(np.int64), FIT_BINS - 1)
        self._counts += np.bincount(bins, minlength=FIT_BINS)

    def _cdf(self, gaps: np.ndarray) -> np.ndarray:
        """The planned law's CDF at these rescaled gaps."""
        return np.interp(gaps, self._table_x, self._table_f, right=1.0)

    def _cumulative(self, t_s: np.ndarray) -> np.ndarray:
        """Λ(t) for many t: the schedule's phases, constant or ramps, in closed form."""
        schedule = self._schedule
        starts = np.array(schedule.starts_s)
        qps = np.array([p.qps for p in schedule.phases])
        lengths = np.array([p.duration_ms / 1000 for p in schedule.phases])
        slopes = np.array([p.to_qps - p.qps for p in schedule.phases]) / lengths
        before = np.concatenate(([0.0], np.cumsum(qps * lengths + slopes * lengths ** 2 / 2)))
        index = np.clip(np.searchsorted(starts, t_s, "right") - 1, 0, len(starts) - 1)
        into = np.maximum(t_s - starts[index], 0.0)
        if not schedule.is_constant:  # a schedule ends with its last phase
            into = np.minimum(into, lengths[index])
        return before[index] + qps[index] * into + slopes[index] * into ** 2 / 2


def _cdf_table(shape: float) -> tuple[np.ndarray, np.ndarray]:
    """The CDF of the gamma law of this shape and mean 1 on a grid, dense where it rises."""
    top = (shape + 12 * np.sqrt(shape) + 30) / shape
    x = np.concatenate(([0.0], np.geomspace(_TABLE_LOW, top, _TABLE_POINTS)))
    return x, regularized_gamma(shape, shape * x)


def gap_fit(config: RunConfig, start_mono_ns: int) -> GapFit | None:
    """The fit a run's issue times are judged by; None for a replayed trace (no law), and for a
    shard's part of a gamma plan (a thinned renewal process is not one)."""
    if config.trace is not None:
        return None
    return GapFit(config.schedule, config.burstiness or 1.0, start_mono_ns,
                  config.timeout_ms / 1000 + _HORIZON_MARGIN_S)


def regularized_gamma(a: float, z: np.ndarray) -> np.ndarray:
    """P(a, z), the regularized lower incomplete gamma function (the CDF of a gamma law of
    shape a and scale 1 at z), by its power series: exact to ~1e-14 where it is below 1 - 1e-14
    and 1 beyond (no SciPy)."""
    z = np.asarray(z, dtype=np.float64)
    beyond = a + 12 * math.sqrt(a) + 30  # the upper tail there is below 1e-14
    inside = np.clip(z, 0.0, beyond)
    with np.errstate(divide="ignore"):
        log_lead = a * np.log(inside) - inside - math.lgamma(a + 1)
    term = np.ones_like(inside)
    total = np.ones_like(inside)
    for n in range(1, int(beyond + 12 * math.sqrt(beyond) + 40)):
        term *= inside / (a + n)
        total += term
    return np.where(z >= beyond, 1.0, np.minimum(np.exp(log_lead) * total, 1.0))


def chi_square_p(statistic: float, dof: int) -> float:
    """The probability of a chi-square statistic this large or larger by chance."""
    return float(1.0 - regularized_gamma(dof / 2, np.array([statistic / 2]))[0])
