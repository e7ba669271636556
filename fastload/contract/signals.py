"""The priority signal a run sends: the control that tells whether a server honours priority.

A run measures what priority buys each class only against a run that sends the same requests
without it. So the tier a request carries to the server (the scheduler's ``tier`` field, KServe's
``priority`` parameter through --tier-priority) can be switched while nothing else changes:
``as-is`` sends each request's own tier; ``equal`` the same middle tier for all; ``shuffled`` a
tier drawn at random with the workload's mix of tiers, independent of the request's class. The
drawn tier comes from a generator of its own in the arrival process, drawn for every sample
whatever the signal, so arrivals, classes, models and tensors are the seed's alone. Everything
fastload records and reports keeps the request's true class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from fastload.contract.workload import RequestClass, Workload

AS_IS, EQUAL, SHUFFLED = "as-is", "equal", "shuffled"
PRIORITY_SIGNALS = (AS_IS, EQUAL, SHUFFLED)


@dataclass(frozen=True)
class PrioritySignal:
    """Which tier each request carries to the server."""

    kind: str = AS_IS
    middle_tier: int = 2  # what ``equal`` sends

    @classmethod
    def of(cls, kind: str, workload: Workload) -> PrioritySignal:
        """``equal`` sends the middle one of the workload's tiers (tier 2 of the spec's 1-3; the
        lower of the two middle ones for an even count)."""
        tiers = sorted({c.tier for c in workload.classes})
        return cls(kind, tiers[(len(tiers) - 1) // 2])

    def tier(self, own_tier: int, drawn_tier: int) -> int:
        """The tier to send for a request of ``own_tier`` whose shuffled draw was
        ``drawn_tier``."""
        if self.kind == AS_IS:
            return own_tier
        return self.middle_tier if self.kind == EQUAL else drawn_tier


def tier_mix(classes: Iterable[RequestClass]) -> tuple[tuple[int, float], ...]:
    """Each tier with its share of the requests, over these classes: what ``shuffled`` draws
    from."""
    shares: dict[int, float] = {}
    for c in classes:
        shares[c.tier] = shares.get(c.tier, 0.0) + c.fraction
    total = sum(shares.values()) or 1.0
    return tuple((tier, share / total) for tier, share in sorted(shares.items()))
