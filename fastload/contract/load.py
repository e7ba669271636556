"""What a run's own processes report of their load, and the limits that load is judged by: the
parts of the load certificate (``results.certificate``) that come from outside the records."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastload.contract.noise import NOISE_SIGMAS
from fastload.contract.percentiles import Spread
from fastload.contract.workload import Workload

# A delay the client adds is judged against the tightest SLO of the workload: 5 % of it (5 ms of
# the spec's 100 ms urgent class) is small beside any SLO yet well above a healthy client's
# p99 (0.6-1.1 ms send lag at 500-1,000 QPS on 2 cores).
DEFAULT_LAG_SHARE_OF_SLO = 0.05
# A sender process busier than this share of one core has no headroom left for bursts.
DEFAULT_MAX_BUSY = 0.9
# Achieved counts further than this many standard deviations of count noise from the plan.
DEFAULT_RATE_SIGMAS = NOISE_SIGMAS


@dataclass(frozen=True)
class ProcessLoad:
    """One fastload process over its part of the run: CPU time against wall time, and, for a
    process with a sender's event loop, how late its periodic callback ran."""

    name: str
    role: str  # "sender", "recorder" (the main process beside sender processes) or "arrivals"
    cpu_s: float
    wall_s: float
    loop_lag: Spread | None = None
    # CPU seconds per wall second: the share of one core it kept busy (its threads add up).
    busy: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "busy", self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0)


class ProcessClock:
    """This process's CPU and wall time from when the clock was made (CPU of all its threads)."""

    def __init__(self) -> None:
        self._cpu_ns, self._wall_ns = time.process_time_ns(), time.monotonic_ns()

    def elapsed_ns(self) -> tuple[int, int]:
        """(CPU ns, wall ns) since the clock was made."""
        return time.process_time_ns() - self._cpu_ns, time.monotonic_ns() - self._wall_ns

    def load(self, name: str, role: str, loop_lag: Spread | None = None) -> ProcessLoad:
        cpu_ns, wall_ns = self.elapsed_ns()
        return ProcessLoad(name, role, cpu_ns / 1e9, wall_ns / 1e9, loop_lag)


@dataclass(frozen=True)
class LoadLimits:
    """When a run's load is no longer the one planned: the client is then the bottleneck."""

    lag_ms: float | None = None  # None: DEFAULT_LAG_SHARE_OF_SLO of the tightest SLO
    max_busy: float = DEFAULT_MAX_BUSY
    rate_sigmas: float = DEFAULT_RATE_SIGMAS

    def lag_limit_ms(self, workload: Workload) -> float:
        """The most issue lateness, send lag or loop lag (p99) a run may show, in ms."""
        if self.lag_ms is not None:
            return self.lag_ms
        return DEFAULT_LAG_SHARE_OF_SLO * min(c.slo_ns for c in workload.classes) / 1e6
