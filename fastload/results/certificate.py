"""The load certificate: was the load the one planned, or was the client the bottleneck?

Judged from what the run recorded, with no extra traffic, in this order (the first that fails is
the reason given):
- the rate: LoadGen's arrivals are Poisson, so each class's count of inter-arrival gaps over its
  issue span, the whole run's and each schedule phase's count are compared with the plan by the
  exact Poisson tail, told as the standard deviations of a normal law with the same tail
  (``noise.poisson_sigmas``), so a short, slow run is not flagged by chance; a
  timer's plan is fixed, so every planned arrival must have been issued;
- issue lateness against a timer's plan (LoadGen keeps its own schedule to itself);
- send lag, issue to call started;
- each sender event loop's lag, how late a periodic callback ran (any answer waited as long);
- each sender process's CPU, as a share of one core.
Also reported, never judged: how well the issue gaps fit their planned law (``arrival_fit``), a
p-value that the issuing thread's own texture (gaps bunched under 0.5-1 ms) can drive low on a
long run.
A p99 is judged by the least it can be given how many samples it was taken from
(``Spread.p99_floor_ms``): the watchdog samples a loop's lag ten times a second, so a short run's
p99 is its single worst lag.
A slow server raises latencies, not these: none of them waits for an answer.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from fastload.contract.config import RunConfig
from fastload.contract.load import DEFAULT_LAG_SHARE_OF_SLO, ProcessLoad
from fastload.contract.noise import poisson_sigmas
from fastload.contract.percentiles import Spread
from fastload.results.arrival_fit import IssueFit
from fastload.results.stats import ClassStats, RunStats

AS_PLANNED = "load as planned"
CLIENT_LIMITED = "client-limited"
NOT_JUDGED = "not judged (interrupted)"


@dataclass(frozen=True)
class RateCheck:
    """Issued against planned for one row: inter-arrival gaps over a class's (or the run's)
    issue span, or samples in a phase; ``sigmas`` in count noise, None for an exact plan."""

    row: str
    issued: int
    planned: float
    sigmas: float | None


@dataclass(frozen=True)
class LoadCertificate:
    verdict: str  # AS_PLANNED, CLIENT_LIMITED or NOT_JUDGED
    reason: str | None  # the first check that failed, with its figure and limit
    lag_limit_ms: float
    max_busy: float
    rate_sigmas: float
    rate: tuple[RateCheck, ...]
    issue_lateness: Spread | None  # None: LoadGen's arrivals (no plan to compare with)
    issue_fit: IssueFit | None  # None: a replayed trace (no law to compare with)
    send_lag: Spread | None
    loop_lag: Spread | None  # the worst sender's
    processes: tuple[ProcessLoad, ...]
    cores: int  # the CPUs this process may run on
    client_overload: int

    @property
    def client_limited(self) -> bool:
        return self.verdict == CLIENT_LIMITED


def certify(config: RunConfig, stats: RunStats, start_mono_ns: int,
            processes: Sequence[ProcessLoad], planned_offsets_s: Sequence[np.ndarray | None],
            interrupted: bool, sub_reasons: Sequence[str] = ()) -> LoadCertificate:
    """The certificate of a run; ``planned_offsets_s``: each arrival plan's
    ``planned_offsets_s()`` (None for LoadGen's); ``sub_reasons``: parts that judged themselves
    client-limited (a Ray shard), each named."""
    limits = config.load_limits
    lag_limit_ms = limits.lag_limit_ms(config.workload)
    timed = [offsets_s for offsets_s in planned_offsets_s if offsets_s is not None]
    rate = (_exact_rate(stats, sum(map(len, timed))) if timed
            else _poisson_rates(config, stats, start_mono_ns))
    senders = [p for p in processes if p.role == "sender"]
    lagged = [p for p in senders if p.loop_lag is not None]
    worst_loop = max(lagged, key=lambda p: p.loop_lag.p99_ms, default=None)
    lateness = Spread.of(stats.lateness_us)
    send_lag = Spread.of(stats.send_lag_us)
    limit_text = _limit_text(config, lag_limit_ms)
    lags = [("issue lateness", lateness), ("send lag", send_lag),
            *((f"{p.name} event-loop lag", p.loop_lag) for p in lagged)]
    reasons = [
        *(_rate_reason(check, limits.rate_sigmas) for check in rate
          if _off_plan(check, limits.rate_sigmas)),
        *(f"{what} p99 {spread.p99_ms:.1f} ms (at least {spread.p99_floor_ms:.1f} ms, from "
          f"{spread.count:,} samples) > {limit_text}"
          for what, spread in lags if spread is not None and spread.p99_floor_ms > lag_limit_ms),
        *(f"{p.name} busy {100 * p.busy:.0f} % of a core > {100 * limits.max_busy:.0f} %"
          for p in senders if p.busy > limits.max_busy),
        *sub_reasons,
    ]
    if interrupted:
        verdict, reason = NOT_JUDGED, None
    else:
        verdict, reason = (CLIENT_LIMITED, reasons[0]) if reasons else (AS_PLANNED, None)
    return LoadCertificate(verdict, reason, lag_limit_ms, limits.max_busy, limits.rate_sigmas,
                           tuple(rate), lateness, stats.fit.result() if stats.fit else None,
                           send_lag,
                           worst_loop.loop_lag if worst_loop is not None else None,
                           tuple(processes), len(os.sched_getaffinity(0)), stats.client_overload)


def _poisson_rates(config: RunConfig, stats: RunStats, start_mono_ns: int) -> list[RateCheck]:
    """Each class, the run and each phase against LoadGen's Poisson plan."""
    schedule = config.schedule
    share = sum(c.fraction for c in stats.by_class) or 1.0

    def gaps(row: str, class_stats: ClassStats, fraction: float) -> RateCheck | None:
        if class_stats.count < 2:
            return None
        first_s = (class_stats.first_issue_ns - start_mono_ns) / 1e9
        last_s = (class_stats.last_issue_ns - start_mono_ns) / 1e9
        # A constant rate goes on past --duration-ms while LoadGen waits for its minimum
        # query count; a schedule ends with its last phase.
        planned = fraction * (schedule.phases[0].qps * (last_s - first_s) if schedule.is_constant
                              else schedule.arrivals_by(last_s) - schedule.arrivals_by(first_s))
        return _check(row, class_stats.count - 1, planned)

    checks = [gaps(f"tier{c.tier}_{c.slo}", s, c.fraction / share)
              for c, s in stats.by_class.items()]
    checks.append(gaps("all", stats.overall(), 1.0))
    checks += [_check(f"phase {index}", phase_stats.count,
                      phase.arrivals_by(phase.duration_ms / 1000))
               for index, (phase, phase_stats) in enumerate(zip(schedule.phases,
                                                                stats.by_phase))]
    return [check for check in checks if check is not None]


def _check(row: str, issued: int, planned: float) -> RateCheck:
    return RateCheck(row, issued, planned, poisson_sigmas(issued, planned))


def _exact_rate(stats: RunStats, planned_arrivals: int) -> list[RateCheck]:
    """A timer's plan is fixed: the run issues each of its arrivals, however late."""
    return [RateCheck("all", stats.overall().count, planned_arrivals, None)]


def _off_plan(check: RateCheck, rate_sigmas: float) -> bool:
    if check.sigmas is None:
        return check.issued != check.planned
    return abs(check.sigmas) > rate_sigmas


def _rate_reason(check: RateCheck, rate_sigmas: float) -> str:
    if check.sigmas is None:
        return f"issued {check.issued:,} of the {check.planned:,.0f} arrivals planned"
    what = "samples" if check.row.startswith("phase") else "gaps between issues"
    return (f"{check.row} had {check.issued:,} {what} against {check.planned:,.1f} planned "
            f"({check.sigmas:+.1f} σ of Poisson count noise; limit ±{rate_sigmas:g} σ)")


def _limit_text(config: RunConfig, lag_limit_ms: float) -> str:
    if config.load_limits.lag_ms is not None:
        return f"{lag_limit_ms:g} ms"
    tightest_ms = min(c.slo_ns for c in config.workload.classes) / 1e6
    return (f"{lag_limit_ms:g} ms ({100 * DEFAULT_LAG_SHARE_OF_SLO:g} % of the tightest SLO, "
            f"{tightest_ms:g} ms)")


def describe(certificate: LoadCertificate) -> str:
    """The certificate in one line, for the summary."""
    if certificate.verdict == NOT_JUDGED:
        return f"load: {NOT_JUDGED}"
    if certificate.client_limited:
        return (f"load: CLIENT-LIMITED: {certificate.reason}; latencies here include the "
                f"client's own delay")
    figures = [f"{name} p99 {spread.p99_ms:.2f} ms" for name, spread in (
        ("issue lateness", certificate.issue_lateness), ("send lag", certificate.send_lag),
        ("loop lag", certificate.loop_lag)) if spread is not None]
    senders = [p.busy for p in certificate.processes if p.role == "sender"]
    if senders:
        figures.append(f"busiest sender {100 * max(senders):.0f} % of a core")
    sigmas = [abs(c.sigmas) for c in certificate.rate if c.sigmas is not None]
    if sigmas:
        figures.append(f"rates within {max(sigmas):.1f} σ of plan")
    fit = certificate.issue_fit
    if fit is not None and fit.p_value is not None:
        figures.append(f"issue gaps fit {fit.law.split(',')[0]} p={fit.p_value:.2g}")
    return (f"load: as planned ({', '.join(figures)}; limits {certificate.lag_limit_ms:g} ms, "
            f"{100 * certificate.max_busy:.0f} %, {certificate.rate_sigmas:g} σ)")


def what_to_do(certificate: LoadCertificate) -> str:
    """Exit 8's message: what a client-limited run means and what to do, in one line."""
    senders = sum(p.role == "sender" for p in certificate.processes)
    more = (f"send from more processes (--processes {min(2 * senders, certificate.cores)}) or "
            f"machines (--ray)" if senders and senders < certificate.cores
            else "send from more machines (--ray)")
    return (f"client-limited: {certificate.reason}. This machine ({certificate.cores} cores) "
            f"did not carry the load as planned, so the latencies include the client's own "
            f"delay: {more}, lower the rate, use a bigger machine, or loosen the limit where "
            f"that delay is acceptable (--max-lag-ms, --max-sender-busy, --rate-sigmas)")
