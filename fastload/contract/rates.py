"""Rate schedules: phases of constant or linearly ramping QPS, and the arithmetic on them.

A schedule is the rate function λ(t) of a non-homogeneous Poisson process (or, with burstiness, of
a time-rescaled gamma renewal process). Λ(t) = ∫₀ᵗ λ is the expected number of arrivals by t;
arrivals of any shape are generated in "operational time" (unit rate) and mapped back through
Λ⁻¹, and fidelity is checked the same way: Λ(tᵢ) − Λ(tᵢ₋₁) of a Poisson schedule are Exp(1).
"""
from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

_NUMBER = r"([+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
_PHASE = re.compile(rf"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)\s*@\s*{_NUMBER}\s*(?:\.\.\s*{_NUMBER})?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000}


class ScheduleError(ValueError):
    """A schedule that cannot be used; the message names the phase."""


@dataclass(frozen=True)
class Phase:
    """``duration_ms`` at ``qps``, ramping linearly to ``to_qps`` when it differs."""

    duration_ms: int
    qps: float
    to_qps: float

    def rate_at(self, t_s: float) -> float:
        return self.qps + (self.to_qps - self.qps) * t_s * 1000 / self.duration_ms

    def arrivals_by(self, t_s: float) -> float:
        """∫₀ᵗ rate, for 0 <= t <= the phase's duration."""
        return t_s * (self.qps + self.rate_at(t_s)) / 2

    def time_of(self, arrivals: float) -> float:
        """The t whose arrivals_by(t) is ``arrivals`` (solves the ramp's quadratic)."""
        slope = (self.to_qps - self.qps) * 1000 / self.duration_ms
        if abs(slope) < 1e-12:
            t_s = arrivals / self.qps if self.qps > 0 else 0.0
        else:  # slope/2 t² + qps t - arrivals = 0, the root in [0, duration]
            root = math.sqrt(max(0.0, self.qps * self.qps + 2 * slope * arrivals))
            t_s = (root - self.qps) / slope
        return min(max(t_s, 0.0), self.duration_ms / 1000)


@dataclass(frozen=True)
class RateSchedule:
    phases: tuple[Phase, ...]

    @classmethod
    def constant(cls, qps: float, duration_ms: int) -> RateSchedule:
        return cls((Phase(duration_ms, qps, qps),))

    @property
    def duration_ms(self) -> int:
        return sum(p.duration_ms for p in self.phases)

    @property
    def peak_qps(self) -> float:
        return max(max(p.qps, p.to_qps) for p in self.phases)

    @property
    def expected_arrivals(self) -> float:
        """Λ over the whole schedule: how many arrivals it asks for."""
        return self.arrivals_by(self.duration_ms / 1000)

    @property
    def mean_qps(self) -> float:
        return self.expected_arrivals / (self.duration_ms / 1000)

    @property
    def is_constant(self) -> bool:
        return len(self.phases) == 1 and self.phases[0].qps == self.phases[0].to_qps

    @cached_property
    def starts_s(self) -> tuple[float, ...]:
        """Each phase's start, in seconds from the run's start."""
        starts, t = [], 0.0
        for phase in self.phases:
            starts.append(t)
            t += phase.duration_ms / 1000
        return tuple(starts)

    def phase_index(self, t_s: float) -> int:
        """The phase that holds t (the first or last one for t outside the schedule)."""
        return max(0, min(bisect.bisect_right(self.starts_s, t_s) - 1, len(self.phases) - 1))

    def rate_at(self, t_s: float) -> float:
        """λ(t); 0 outside [0, duration)."""
        if t_s < 0 or t_s >= self.duration_ms / 1000:
            return 0.0
        index = self.phase_index(t_s)
        return self.phases[index].rate_at(t_s - self.starts_s[index])

    def arrivals_by(self, t_s: float) -> float:
        """Λ(t) = ∫₀ᵗ λ: the expected number of arrivals by t."""
        total, start = 0.0, 0.0
        for phase in self.phases:
            length = phase.duration_ms / 1000
            if t_s <= start + length:
                return total + phase.arrivals_by(max(0.0, t_s - start))
            total += phase.arrivals_by(length)
            start += length
        return total

    def time_of(self, arrivals: float) -> float:
        """Λ⁻¹: the time by which ``arrivals`` are expected (inf past the schedule's total)."""
        start, last = 0.0, len(self.phases) - 1
        for index, phase in enumerate(self.phases):
            length = phase.duration_ms / 1000
            in_phase = phase.arrivals_by(length)
            # The last phase absorbs rounding: Λ summed phase by phase may differ in the last bit.
            if arrivals <= in_phase or (index == last and arrivals <= in_phase * (1 + 1e-9)):
                return start + phase.time_of(arrivals)
            arrivals -= in_phase
            start += length
        return math.inf

    def scaled(self, factor: float) -> RateSchedule:
        """The same phases at ``factor`` times the rate (a Ray shard's part of a run)."""
        return RateSchedule(tuple(Phase(p.duration_ms, p.qps * factor, p.to_qps * factor)
                                  for p in self.phases))

    def describe(self) -> str:
        return ",".join(f"{p.duration_ms}ms@{p.qps:g}" + (f"..{p.to_qps:g}" if p.to_qps != p.qps
                                                          else "") for p in self.phases)


def parse_schedule(spec: str) -> RateSchedule:
    """``20s@200,5s@800,20s@200``; ``DURATION@A..B`` ramps from A to B; units ms, s, m."""
    phases = []
    for i, text in enumerate(spec.split(",")):
        match = _PHASE.match(text)
        if match is None:
            raise ScheduleError(f"phase {i + 1} {text.strip()!r} is not DURATION@QPS or "
                                f"DURATION@QPS..QPS (durations in ms, s or m, e.g. 20s@200)")
        amount, unit, qps, to_qps = match.groups()
        phases.append(make_phase(round(float(amount) * _UNIT_MS[unit]), _number(qps, i),
                                 _number(to_qps, i) if to_qps is not None else None, i))
    return RateSchedule(tuple(phases))


def make_phase(duration_ms: int, qps: float, to_qps: float | None, index: int) -> Phase:
    """One validated phase; ``index`` (from 0) names it in errors."""
    to_qps = qps if to_qps is None else to_qps
    if duration_ms <= 0:
        raise ScheduleError(f"phase {index + 1} must last > 0 ms, got {duration_ms} ms")
    if not (math.isfinite(qps) and math.isfinite(to_qps) and qps >= 0 and to_qps >= 0
            and max(qps, to_qps) > 0):
        raise ScheduleError(f"phase {index + 1} needs rates >= 0, not both 0, got "
                            f"{qps:g}..{to_qps:g}")
    return Phase(duration_ms, float(qps), float(to_qps))


def _number(text: str, index: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise ScheduleError(f"phase {index + 1}: {text!r} is not a number") from None


def phases_from_table(entries: Sequence[object], where: str) -> RateSchedule:
    """A workload file's ``[[phases]]``: ``duration_ms``, ``qps``, optional ``to_qps``."""
    phases = []
    for i, entry in enumerate(entries):
        at = f"{where}: phases[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"duration_ms", "qps", "to_qps"}:
            raise ScheduleError(f"{at} must be a table of duration_ms, qps and optional to_qps")
        duration, qps, to_qps = entry.get("duration_ms"), entry.get("qps"), entry.get("to_qps")
        for name, value in (("duration_ms", duration), ("qps", qps), ("to_qps", to_qps)):
            if (value is not None or name != "to_qps") and (
                    not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ScheduleError(f"{at}.{name} must be a number, got {value!r}")
        try:
            phases.append(make_phase(round(duration), float(qps),
                                     None if to_qps is None else float(to_qps), i))
        except ScheduleError as exc:
            raise ScheduleError(f"{at}: {exc}") from None
    if not phases:
        raise ScheduleError(f"{where}: phases must not be empty")
    return RateSchedule(tuple(phases))
