"""Verdicts a run reports beside its own statistics: LoadGen's, from the summary log each of its
tests writes (``arrivals.loadgen`` reads them), so the statistics need not know the source."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoadGenVerdict:
    """LoadGen's verdict on one test and, when INVALID, its reasons in LoadGen's own words."""

    test: str
    valid: bool | None  # None: LoadGen wrote no verdict (the test did not end)
    reasons: tuple[str, ...] = ()
