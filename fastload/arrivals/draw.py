"""Each issued sample's class and model, and the tier a shuffled priority signal would send,
drawn in the arrival process in issue order."""
from __future__ import annotations

import random
from itertools import accumulate
from typing import Sequence

from fastload.contract.workload import RequestClass


class SampleDraw:
    """Gives each issued sample its class and model by independent seeded draws.

    Draws happen in issue order, on the issuing thread, so the same seed gives the same
    sequence. Model draws use one generator per class, so per-class sequences repeat across runs
    even when several arrival processes interleave.
    """

    def __init__(self, classes: tuple[RequestClass, ...], seed: int, label: str,
                 tier_mix: Sequence[tuple[int, float]]) -> None:
        self._class_rng = random.Random(f"{seed}:class:{label}")
        # The shuffled signal's tier: a generator of its own, drawn for every sample, so the
        # class and model draws are the same whichever signal a run sends.
        self._signal_rng = random.Random(f"{seed}:signal:{label}")
        self._tiers = [tier for tier, _ in tier_mix]
        self._tier_cum = list(accumulate(share for _, share in tier_mix))
        self._class_indices = range(len(classes))
        self._class_cum = list(accumulate(c.fraction for c in classes))
        self._models = [
            (range(len(c.models)), list(accumulate(p for _, p in c.models)),
             random.Random(f"{seed}:model:{c.label}"))
            for c in classes
        ]

    def draw(self) -> tuple[int, int, int]:
        """The next sample's (class index, model index within its class, shuffled tier)."""
        cls = 0
        if len(self._class_indices) > 1:
            cls = self._class_rng.choices(self._class_indices, cum_weights=self._class_cum)[0]
        return cls, self.draw_model(cls), self.draw_tier()

    def draw_tier(self) -> int:
        """A tier drawn with the workload's mix, whatever the sample's class (0 for a plan
        without a mix, which never sends a shuffled signal)."""
        if not self._tiers:
            return 0
        return self._signal_rng.choices(self._tiers, cum_weights=self._tier_cum)[0]

    def draw_model(self, cls: int) -> int:
        """A model index for a sample whose class is already fixed (e.g. by a trace)."""
        indices, cum_weights, rng = self._models[cls]
        return 0 if len(indices) == 1 else rng.choices(indices, cum_weights=cum_weights)[0]
