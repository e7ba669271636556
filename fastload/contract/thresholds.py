"""`--fail-if` conditions, for CI pipelines: a run that meets one exits 6.

Grammar: ``ROW.FIELD OP NUMBER``, e.g. ``tier1_urgent.attainment<99``, ``all.p99>=250``.
ROW is a class label (``tier{T}_{slo}``) or ``all``; FIELD one of FIELDS (attainment in %,
latencies in ms); OP one of ``< <= > >= == !=``. Here is what a condition is; the summary's
side (finding the row's value) is ``results.thresholds``.
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Callable, Iterable

# Field name -> (the summary row's attribute, unit shown in messages).
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

    @property
    def attribute(self) -> str:
        """The summary row's attribute the condition reads."""
        return FIELDS[self.field][0]

    @property
    def unit(self) -> str:
        return FIELDS[self.field][1]

    def holds(self, actual: float) -> bool:
        return OPERATORS[self.op](actual, self.value)


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
