"""How sure a figure is beyond sampling noise, so that the load certificate does not cry wolf: a
count of arrivals against a Poisson plan, and how many samples above a value make a percentile
surely above it. Exact tails, not the normal law, so that small counts are judged right too (3
arrivals where 0.2 were planned is 6 σ by the normal law but a 1-in-870 chance). No NumPy: the
arrival processes import this and must not load it."""
from __future__ import annotations

import math
from statistics import NormalDist

# How sure a figure must be before it is judged beyond its limit: as sure as this many standard
# deviations of a normal law (a one-sided tail of 3.2e-5).
NOISE_SIGMAS = 4.0
_NORMAL = NormalDist()
# Terms of a tail sum below this share of the sum so far end it.
_NEGLIGIBLE = 1e-17
_LOG_TINY = math.log(1e-300)


def poisson_sigmas(observed: int, expected: float) -> float:
    """How far ``observed`` lies from a Poisson count of mean ``expected``, as the standard
    deviations of a normal law with the same tail probability: negative when short, 0 when it
    is no further out than the median."""
    if expected <= 0:
        return math.inf if observed else 0.0
    short = observed < expected
    tail = _poisson_tail(observed, expected, below=short)  # P(X <= observed) or P(X >= observed)
    if tail >= 0.5:
        return 0.0
    if tail <= 0.0:  # beyond a double's range: the normal law's figure is as telling
        return (observed - expected) / math.sqrt(expected)
    return (1.0 if short else -1.0) * _NORMAL.inv_cdf(tail)


def _poisson_tail(k: int, mean: float, below: bool) -> float:
    """P(X <= k) when ``below``, else P(X >= k), summed from k outwards until the terms are
    negligible (a few standard deviations' worth of terms)."""
    if not below and k == 0:
        return 1.0
    log_term = k * math.log(mean) - mean - math.lgamma(k + 1)
    if log_term < _LOG_TINY:  # so far out that the sum is no double either
        return 0.0
    total, j = 0.0, k
    while True:
        term = math.exp(log_term)
        total += term
        if below:
            if j == 0:
                break
            log_term += math.log(j / mean)
            j -= 1
        else:
            j += 1
            log_term += math.log(mean / j)
        if term < _NEGLIGIBLE * total and (j < mean if below else j > mean):
            break
    return min(total, 1.0)


def fewest_above(n: int, q: int, sigmas: float = NOISE_SIGMAS) -> int:
    """The fewest of n samples that, lying above a value, show the q-th percentile of what they
    were drawn from to be above it too; n + 1 when even all n would not.

    The count of samples above the q-th percentile is binomial (n, 1 - q/100); this is the
    smallest count its upper tail reaches with probability at most that of ``sigmas`` standard
    deviations of a normal law. So the k-th largest sample is a lower bound of the percentile.
    """
    share = 1 - q / 100
    tail = _NORMAL.cdf(-sigmas)
    log_odds = math.log(share / (1 - share))
    log_pmf = n * math.log1p(-share)  # of k = 0 samples above
    below = 0.0  # P(fewer than k above)
    for k in range(n + 1):
        if 1 - below <= tail:
            return k
        below += math.exp(log_pmf)
        if k < n:
            log_pmf += math.log(n - k) - math.log(k + 1) + log_odds
    return n + 1

