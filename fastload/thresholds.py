"""`--fail-if` conditions over the summary, for CI pipelines: a run that meets one exits 6.

Grammar: ``ROW.FIELD OP NUMBER``, e.g. ``tier1_urgent.attainment<99``, ``all.p99>=250``.
ROW is a class label (``tier{T}_{slo}``) or ``all``; FIELD one of FIELDS (attainment in %,
latencies in ms); OP one of ``< <= > >= == !=``.
"""
from __future__ import annotations

import math
import operator
import re
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

from fastload.summary import ClassSummary, RunSummary

# Field name -> (ClassSummary attribute, unit shown in messages).
FIELDS: dict[str, tuple[str, str]] = {
    "attainment": ("slo_attainment_pct", " %"),
    "p50": ("p50_ms", " ms"),
    "p95": ("p95_ms", " ms"),
    "p99": ("p99_ms", " ms"),
    "errors": ("errors", ""),
    "count": ("count", ""),
    "achieved_qps": ("achieved_qps", " QPS"),
}
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "<": operator.lt, ">": operator.gt,
}
OVERALL = "all"
_CONDITION = re.compile(r"^\s*([A-Za-z0-9_]+)\.([a-z0-9_]+)\s*(<=|>=|==|!=|<|>)\s*"
                        r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class ThresholdError(ValueError):
    """A condition that cannot be parsed or names a row or field that does not exist."""


@dataclass(frozen=True)
class Threshold:
    text: str
    row: str  # a class label or "all"
    field: str
    op: str
    value: float

    def check(self, summary: RunSummary) -> str | None:
        """None if the condition does not hold; else one line saying it does, with the value."""
        row = summary.overall if self.row == OVERALL else next(
            (r for r in summary.classes if _label(r) == self.row), None)
        attribute, unit = FIELDS[self.field]
        actual = math.nan if row is None else float(getattr(row, attribute))
        if math.isnan(actual):
            return f"{self.text}: {self.row} has no {self.field} (no samples), so it cannot pass"
        if OPERATORS[self.op](actual, self.value):
            return f"{self.text}: {self.row} {self.field} is {actual:g}{unit}"
        return None


def parse_threshold(text: str, labels: Iterable[str]) -> Threshold:
    """``text`` as a Threshold; ``labels`` are the workload's class labels."""
    match = _CONDITION.match(text)
    if match is None:
        raise ThresholdError(f"--fail-if must be ROW.FIELD OP NUMBER, e.g. "
                             f"tier1_urgent.attainment<99, got {text!r}")
    row, field, op, number = match.groups()
    rows = [*labels, OVERALL]
    if row not in rows:
        raise ThresholdError(f"--fail-if {text!r}: no row {row!r}; the workload has "
                             f"{', '.join(rows)}")
    if field not in FIELDS:
        raise ThresholdError(f"--fail-if {text!r}: no field {field!r}; choose from "
                             f"{', '.join(FIELDS)}")
    return Threshold(text.strip(), row, field, op, float(number))


def report_held(thresholds: Iterable[Threshold], summary: RunSummary) -> list[str]:
    """The conditions that hold for ``summary``, each said on stderr; any one means exit 6."""
    held = [line for line in (t.check(summary) for t in thresholds) if line]
    for line in held:
        print(f"fastload: --fail-if {line}", file=sys.stderr, flush=True)
    return held


def _label(row: ClassSummary) -> str:
    return f"tier{row.tier}_{row.slo}"
