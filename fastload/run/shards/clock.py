"""A shard's clocks against the driver's, measured NTP-style over one round trip.

Deadlines are Unix ns stamped on each shard's clock, so a shard whose wall clock is off sends
deadlines that are off by as much; the offset is reported, never corrected. Each shard's
CLOCK_MONOTONIC is measured the same way, to put its issue times on the driver's clock.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

ROUNDS = 8


@dataclass(frozen=True)
class ClockOffset:
    """Shard minus driver. The true offsets lie within ± round_trip_ns / 2 of these."""

    wall_ns: int
    mono_ns: int
    round_trip_ns: int


def read_clocks() -> tuple[int, int]:
    """This machine's (Unix ns, CLOCK_MONOTONIC ns), read together."""
    return time.time_ns(), time.monotonic_ns()


def measure_offset(shard_clocks: Callable[[], tuple[int, int]], rounds: int = ROUNDS
                   ) -> ClockOffset:
    """offset = shard clock - (t0 + t1) / 2 around a call that reads it; of several calls the
    one with the shortest round trip, whose delays bound the error tightest (NTP's filter)."""
    best = None
    for _ in range(rounds):
        wall0_ns, mono0_ns = read_clocks()
        shard_wall_ns, shard_mono_ns = shard_clocks()
        wall1_ns, mono1_ns = read_clocks()
        offset = ClockOffset(shard_wall_ns - (wall0_ns + wall1_ns) // 2,
                             shard_mono_ns - (mono0_ns + mono1_ns) // 2, mono1_ns - mono0_ns)
        if best is None or offset.round_trip_ns < best.round_trip_ns:
            best = offset
    return best
