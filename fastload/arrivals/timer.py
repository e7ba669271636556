"""Arrivals LoadGen cannot make: gamma renewal processes and replayed traces, from a timer.

LoadGen's Server scenario is Poisson only, so bursty (gamma) arrivals and trace replays are
issued by this timer instead, from a child process of their own with the same records and pipe
as LoadGen's: everything after issue (encoding, dispatch, recording, deadlines) is one path.
Each arrival is slept towards and the last ``SPIN_NS`` spun, which keeps issue times within a few
µs of the plan on an idle core; arrivals already due are issued together under one stamp.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from fastload.arrivals.draw import SampleDraw
from fastload.arrivals.pipe import ChildPipe, raise_priority
from fastload.contract.arrival_times import DRAWN, TimedArrivals
from fastload.contract.rates import RateSchedule
from fastload.contract.workload import RequestClass

SPIN_NS = 200_000


@dataclass(frozen=True)
class TimerPlan:
    """Gamma arrivals at a (scheduled) rate, or a trace's; one timer process issues them all."""

    label: str
    classes: tuple[RequestClass, ...]
    seed: int
    schedule: RateSchedule | None = None  # gamma: the rate over time
    burstiness: float = 1.0  # gamma shape k: inter-arrival CV 1/sqrt(k)
    trace: TimedArrivals | None = None
    tier_mix: tuple[tuple[int, float], ...] = ()  # what a shuffled signal draws
    wants_completions = False  # the timer issues on its schedule, whatever completes

    @property
    def duration_ms(self) -> int:
        return (self.trace if self.trace is not None else self.schedule).duration_ms

    def verdict(self, ended: bool) -> None:
        """No LoadGen test, so no LoadGen verdict."""
        return None

    def planned_offsets_s(self) -> np.ndarray:
        """Each arrival's planned time; the timer issues arrival k as source id k."""
        return self.arrivals().offsets_s

    def arrivals(self) -> TimedArrivals:
        if self.trace is not None:
            return self.trace
        offsets = gamma_offsets_s(self.schedule, self.burstiness, self.seed)
        drawn = np.full(len(offsets), DRAWN, dtype=np.int32)
        return TimedArrivals(offsets, drawn, drawn)


def gamma_offsets_s(schedule: RateSchedule, shape: float, seed: int) -> np.ndarray:
    """A gamma renewal process with shape k and rate λ(t), by time rescaling.

    Unit-mean gamma gaps (shape k, scale 1/k) are summed in operational time, where the rate is
    1, and each sum s is mapped back to the t with Λ(t) = s; for k = 1 this is exactly a
    non-homogeneous Poisson process.
    """
    rng = np.random.default_rng([seed, 0x67616D6D61])  # "gamma": its own stream of the seed
    expected = schedule.expected_arrivals
    size = int(expected + 10 * np.sqrt(expected / shape) + 100)
    operational = np.cumsum(rng.gamma(shape, 1 / shape, size))
    operational = operational[operational < expected]
    if schedule.is_constant:
        return operational / schedule.phases[0].qps
    return np.array([schedule.time_of(s) for s in operational.tolist()])


def run_timer(plan: TimerPlan, pipe: ChildPipe) -> None:
    """Child-process entry point: issue every planned arrival at its time, then end."""
    arrivals = plan.arrivals()
    draw = SampleDraw(plan.classes, plan.seed, plan.label, plan.tier_mix)
    raise_priority(realtime=True)
    start_ns = pipe.wait_for_go()
    if start_ns is None:
        return
    # No completions come (wants_completions); the pipe's EOF still says the parent died.
    threading.Thread(target=pipe.completions_forever, args=(lambda ids: None,),
                     name="fastload-complete", daemon=True).start()
    monotonic_ns, sleep, issue = time.monotonic_ns, time.sleep, pipe.issue
    targets_ns = (start_ns + np.round(arrivals.offsets_s * 1e9)).astype(np.int64).tolist()
    classes, models = arrivals.class_indices.tolist(), arrivals.model_indices.tolist()

    def class_and_model(k: int) -> tuple[int, int, int]:
        cls, model = classes[k], models[k]
        if cls == DRAWN:
            return draw.draw()
        return cls, draw.draw_model(cls) if model == DRAWN else model, draw.draw_tier()

    k, count = 0, len(targets_ns)
    while k < count:
        wait_ns = targets_ns[k] - monotonic_ns()
        if wait_ns > SPIN_NS:
            sleep((wait_ns - SPIN_NS) / 1e9)
        while (now_ns := monotonic_ns()) < targets_ns[k]:
            pass
        # Everything already due goes out together, under one stamp: gaps shorter than an
        # issue's own cost (a few µs) come out as 0 rather than late.
        due = k + 1
        while due < count and targets_ns[due] <= now_ns:
            due += 1
        rows = iter(range(k, due))
        issue(range(k, due), lambda: class_and_model(next(rows)))
        k = due
    pipe.ended()
