"""`--fail-if` conditions checked against a run's summary (what a condition is:
``contract.thresholds``)."""
from __future__ import annotations

import math
import sys
from typing import Iterable

from fastload.contract.thresholds import OVERALL, Threshold
from fastload.results.summary import RunSummary


def check(threshold: Threshold, summary: RunSummary) -> str | None:
    """None if the condition does not hold; else one line saying it does, with the value."""
    row = summary.overall if threshold.row == OVERALL else next(
        (r for r in summary.classes if r.label == threshold.row), None)
    actual = math.nan if row is None else float(getattr(row, threshold.attribute))
    if math.isnan(actual):
        return (f"{threshold.text}: {threshold.row} has no {threshold.field} (no samples), so it "
                f"cannot pass")
    if threshold.holds(actual):
        return f"{threshold.text}: {threshold.row} {threshold.field} is {actual:g}{threshold.unit}"
    return None


def report_held(thresholds: Iterable[Threshold], summary: RunSummary) -> list[str]:
    """The conditions that hold for ``summary``, each said on stderr; any one means exit 6."""
    held = [line for line in (check(t, summary) for t in thresholds) if line]
    for line in held:
        print(f"fastload: --fail-if {line}", file=sys.stderr, flush=True)
    return held
