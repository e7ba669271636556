"""Arrival traces: CSV or JSON-lines files with a timestamp per request, read into offsets.

``timestamp`` (any case) is milliseconds when it is a number (AIPerf's fixed-schedule convention)
or an ISO-8601 date-time (as in the public Azure inference traces); times count from the first
row. Optional ``tier``, ``slo`` and ``model`` fix a row's class and model; otherwise the workload
mix draws them. Every error names the file and the line.
"""
from __future__ import annotations

import csv
import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fastload.contract.arrival_times import DRAWN, TimedArrivals
from fastload.contract.workload import RequestClass

# Python 3.10's fromisoformat takes at most 6 fractional digits; Azure's traces have 7.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the file and the line."""


def load_trace(path: Path, classes: tuple[RequestClass, ...], speed: float) -> TimedArrivals:
    """Read a trace; ``speed`` > 1 replays it that many times faster."""
    class_index = {(c.tier, c.slo): i for i, c in enumerate(classes)}
    offsets, class_indices, model_indices = [], [], []
    first_s = previous_s = None
    for line_no, row in _rows(path):
        where = f"trace {path} line {line_no}"
        time_s = _seconds(row.get("timestamp"), where)
        if first_s is None:
            first_s = previous_s = time_s
        if time_s < previous_s:
            raise TraceError(f"{where}: timestamp goes back in time ({row['timestamp']!r} is "
                             f"before the previous row's)")
        previous_s = time_s
        cls, model = _class_and_model(row, class_index, classes, where)
        offsets.append((time_s - first_s) / speed)
        class_indices.append(cls)
        model_indices.append(model)
    if not offsets:
        raise TraceError(f"trace {path} has no rows")
    return TimedArrivals(np.array(offsets, dtype=np.float64),
                         np.array(class_indices, dtype=np.int32),
                         np.array(model_indices, dtype=np.int32))


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row with lower-case keys); JSON lines for .jsonl/.json, else CSV."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TraceError(f"trace {path}: cannot read it ({exc.strerror})") from None
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise TraceError(f"trace {path} line {line_no}: not JSON ({exc})") from None
            if not isinstance(row, dict):
                raise TraceError(f"trace {path} line {line_no}: not a JSON object")
            yield line_no, {str(k).lower(): v for k, v in row.items()}
        return
    reader = csv.DictReader(text.splitlines())
    if reader.fieldnames is None or "timestamp" not in [f.lower() for f in reader.fieldnames]:
        raise TraceError(f"trace {path} line 1: no timestamp column in the header")
    for row in reader:
        if None in row or None in row.values():
            raise TraceError(f"trace {path} line {reader.line_num}: expected "
                             f"{len(reader.fieldnames)} fields")
        yield reader.line_num, {k.lower(): v for k, v in row.items()}


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str) and value.strip():
        try:
            number = float(value)
        except ValueError:
            return _iso_seconds(value.strip(), where)
    else:
        raise TraceError(f"{where}: timestamp missing")
    if not math.isfinite(number):
        raise TraceError(f"{where}: timestamp {value!r} is not a finite number")
    return number / 1000


def _iso_seconds(text: str, where: str) -> float:
    try:
        moment = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        raise TraceError(f"{where}: timestamp {text!r} is neither milliseconds nor an "
                         f"ISO-8601 date-time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _class_and_model(row: dict[str, Any], class_index: dict[tuple[int, str], int],
                     classes: tuple[RequestClass, ...], where: str) -> tuple[int, int]:
    tier, slo, model = row.get("tier"), row.get("slo"), row.get("model")
    tier = None if tier in (None, "") else tier
    slo = None if slo in (None, "") else slo
    model = None if model in (None, "") else str(model)
    if tier is None and slo is None:
        if model is not None:
            raise TraceError(f"{where}: a model needs the row's tier and slo too")
        return DRAWN, DRAWN
    try:
        key = (int(tier), str(slo))
    except (TypeError, ValueError):
        raise TraceError(f"{where}: tier {tier!r} and slo {slo!r} must both be given, "
                         f"tier as an integer") from None
    if key not in class_index:
        known = ", ".join(c.label for c in classes)
        raise TraceError(f"{where}: tier {key[0]} slo {key[1]!r} is not a class of the "
                         f"workload ({known})")
    cls = class_index[key]
    if model is None:
        return cls, DRAWN
    models = [m for m, _ in classes[cls].models]
    if model not in models:
        raise TraceError(f"{where}: model {model!r} is not one of {classes[cls].label}'s "
                         f"models ({', '.join(models)})")
    return cls, models.index(model)
