"""Planned arrivals: offsets from GO and each one's class and model, as a trace gives them or as
the timer plans gamma arrivals; a Ray shard runs its share of them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Trace rows give class and model indices, or this to have the workload mix draw them.
DRAWN = -1


@dataclass(frozen=True)
class TimedArrivals:
    """Arrival offsets from GO in seconds, ascending, and each one's class and model (or DRAWN)."""

    offsets_s: np.ndarray
    class_indices: np.ndarray
    model_indices: np.ndarray

    @property
    def duration_ms(self) -> int:
        """From the first arrival to the last."""
        return math.ceil(float(self.offsets_s[-1]) * 1000)

    @property
    def mean_qps(self) -> float:
        """The arrivals' gaps over their span (NaN for a single arrival)."""
        span_s = float(self.offsets_s[-1])
        return (len(self.offsets_s) - 1) / span_s if span_s > 0 else math.nan
