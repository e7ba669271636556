"""Request classes, SLOs, workload mixes and model shapes; loads and validates workload files.

Everything here is parsed once at start-up into frozen dataclasses; the hot path only reads them.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from fastload.contract.exits import WorkloadError
from fastload.contract.rates import RateSchedule, ScheduleError, phases_from_table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

TIERS = (1, 2, 3)

SLO_LATENCY_NS: dict[str, int] = {
    "urgent": 100_000_000,
    "normal": 500_000_000,
    "relaxed": 2_000_000_000,
}

# Urgent traffic goes to ResNet-50 only; normal and relaxed split 70/30 with ViT.
MODEL_FOR_SLO: dict[str, tuple[tuple[str, float], ...]] = {
    "urgent": (("resnet50", 1.0),),
    "normal": (("resnet50", 0.7), ("vit", 0.3)),
    "relaxed": (("resnet50", 0.7), ("vit", 0.3)),
}

INPUT_SHAPE = (1, 3, 224, 224)
MODEL_SHAPES: dict[str, tuple[int, ...]] = {"resnet50": INPUT_SHAPE, "vit": INPUT_SHAPE}

_SLO_ORDER = ("urgent", "normal", "relaxed")

# Fraction of total QPS per class, in the spec's order (1U, 1N, 1R, 2U, ..., 3R).
WORKLOAD_FRACTIONS: dict[str, tuple[float, ...]] = {
    "balanced": (0.05, 0.10, 0.15, 0.10, 0.15, 0.10, 0.10, 0.15, 0.10),
    "urgent_heavy": (0.20, 0.10, 0.05, 0.15, 0.10, 0.05, 0.15, 0.10, 0.10),
    "batch_heavy": (0.05, 0.05, 0.20, 0.05, 0.10, 0.20, 0.05, 0.10, 0.20),
}

# The spec skips classes whose share of the total rate is below this.
MIN_CLASS_QPS = 0.01


@dataclass(frozen=True)
class RequestClass:
    """One (tier, SLO) traffic class with its share of the total rate and its model mix."""

    tier: int
    slo: str
    slo_ns: int
    fraction: float
    models: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        """Directory-safe name, as the spec names per-class LoadGen log folders."""
        return f"tier{self.tier}_{self.slo}"


@dataclass(frozen=True)
class Workload:
    """A named mix of request classes and the input shape of every model they use."""

    name: str
    classes: tuple[RequestClass, ...]
    model_shapes: Mapping[str, tuple[int, ...]]
    # A workload file's [[phases]]: the run's rate over time, instead of --total-qps.
    schedule: RateSchedule | None = None

    def active_classes(self, total_qps: float) -> tuple[RequestClass, ...]:
        """Classes whose rate is at least MIN_CLASS_QPS at this total rate."""
        return tuple(c for c in self.classes if c.fraction * total_qps >= MIN_CLASS_QPS)

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.model_shapes)


def builtin_workload(name: str) -> Workload:
    """One of the spec's three mixes: balanced, urgent_heavy, batch_heavy."""
    try:
        fractions = WORKLOAD_FRACTIONS[name]
    except KeyError:
        raise WorkloadError(
            f"unknown workload {name!r}; choose one of {', '.join(WORKLOAD_FRACTIONS)}"
        ) from None
    pairs = [(tier, slo) for tier in TIERS for slo in _SLO_ORDER]
    classes = tuple(
        RequestClass(tier, slo, SLO_LATENCY_NS[slo], fraction, MODEL_FOR_SLO[slo])
        for (tier, slo), fraction in zip(pairs, fractions)
    )
    return Workload(name, classes, dict(MODEL_SHAPES))


def load_workload_file(path: str | Path) -> Workload:
    """Parse a TOML or JSON workload file; every error names the file and the bad entry.

    Layout (TOML shown; JSON has the same keys)::

        name = "my_mix"                      # optional, defaults to the file's stem
        [models.resnet50]                    # optional: resnet50 and vit default to 1x3x224x224
        shape = [1, 3, 224, 224]
        [[classes]]
        tier = 1
        slo = "urgent"                       # a label; urgent/normal/relaxed have default slo_ms
        slo_ms = 100                         # required for any other label
        fraction = 0.25                      # fractions over all classes sum to 1
        models = { resnet50 = 1.0 }          # optional for urgent/normal/relaxed (the spec's mix)
    """
    path = Path(path)
    where = f"workload file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise WorkloadError(f"{where}: cannot read it ({exc.strerror})") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise WorkloadError(f"{where}: not valid {_format_name(path)}: {exc}") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{where}: the top level must be a table/object")
    return _parse_workload(data, default_name=path.stem, where=where)


def _format_name(path: Path) -> str:
    return "JSON" if path.suffix.lower() == ".json" else "TOML"


def _parse_workload(data: Mapping[str, Any], default_name: str, where: str) -> Workload:
    _check_keys(data, {"name", "models", "classes", "phases"}, where)
    name = data.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"{where}: name must be a non-empty string, got {name!r}")

    model_shapes = dict(MODEL_SHAPES)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise WorkloadError(f"{where}: models must be a table of model name -> {{shape = [...]}}")
    for model, spec in models.items():
        at = f"{where}: models.{model}"
        if not isinstance(spec, dict):
            raise WorkloadError(f"{at} must be a table with a shape")
        _check_keys(spec, {"shape"}, at)
        model_shapes[model] = _parse_shape(spec.get("shape"), f"{at}.shape")

    raw_classes = data.get("classes")
    if not isinstance(raw_classes, list) or not raw_classes:
        raise WorkloadError(f"{where}: classes must be a non-empty list of class tables")
    classes = tuple(
        _parse_class(entry, model_shapes, f"{where}: classes[{i}]")
        for i, entry in enumerate(raw_classes)
    )
    seen: set[tuple[int, str]] = set()
    for i, cls in enumerate(classes):
        if (cls.tier, cls.slo) in seen:
            raise WorkloadError(
                f"{where}: classes[{i}] repeats tier {cls.tier} with slo {cls.slo!r}"
            )
        seen.add((cls.tier, cls.slo))
    total = math.fsum(c.fraction for c in classes)
    if abs(total - 1.0) > 1e-6:
        raise WorkloadError(f"{where}: class fractions must sum to 1, got {total:.6g}")
    used = {m for c in classes for m, _ in c.models}
    schedule = None
    if "phases" in data:
        if not isinstance(data["phases"], list):
            raise WorkloadError(f"{where}: phases must be a list of phase tables")
        try:
            schedule = phases_from_table(data["phases"], where)
        except ScheduleError as exc:
            raise WorkloadError(str(exc)) from None
    return Workload(name, classes, {m: s for m, s in model_shapes.items() if m in used},
                    schedule)


def _parse_class(
    entry: Any, model_shapes: Mapping[str, tuple[int, ...]], at: str
) -> RequestClass:
    if not isinstance(entry, dict):
        raise WorkloadError(f"{at} must be a table")
    _check_keys(entry, {"tier", "slo", "slo_ms", "fraction", "models"}, at)
    tier = entry.get("tier")
    if not isinstance(tier, int) or isinstance(tier, bool) or not 1 <= tier < 2**31:
        raise WorkloadError(f"{at}.tier must be a positive integer, got {tier!r}")
    slo = entry.get("slo")
    if not isinstance(slo, str) or not slo.isidentifier():
        raise WorkloadError(f"{at}.slo must be a name like 'urgent', got {slo!r}")
    slo_ms = entry.get("slo_ms", SLO_LATENCY_NS[slo] / 1e6 if slo in SLO_LATENCY_NS else None)
    if slo_ms is None:
        raise WorkloadError(f"{at}.slo_ms is required for slo {slo!r}")
    if not _is_number(slo_ms) or not slo_ms > 0:
        raise WorkloadError(f"{at}.slo_ms must be a positive number, got {slo_ms!r}")
    fraction = entry.get("fraction")
    if not _is_number(fraction) or not 0 <= fraction <= 1:
        raise WorkloadError(f"{at}.fraction must be a number in [0, 1], got {fraction!r}")

    raw_models = entry.get("models", dict(MODEL_FOR_SLO.get(slo, ())))
    if not isinstance(raw_models, dict) or not raw_models:
        raise WorkloadError(f"{at}.models must be a table of model name -> probability")
    for model, p in raw_models.items():
        if model not in model_shapes:
            raise WorkloadError(
                f"{at}.models names {model!r}, which has no shape; add [models.{model}] shape = [...]"
            )
        if not _is_number(p) or not 0 <= p <= 1:
            raise WorkloadError(f"{at}.models.{model} must be a probability in [0, 1], got {p!r}")
    model_total = math.fsum(raw_models.values())
    if abs(model_total - 1.0) > 1e-6:
        raise WorkloadError(f"{at}.models probabilities must sum to 1, got {model_total:.6g}")
    models = tuple((m, float(p)) for m, p in raw_models.items())
    return RequestClass(tier, slo, round(slo_ms * 1e6), float(fraction), models)


def _parse_shape(shape: Any, at: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise WorkloadError(f"{at} must be a list of integers, got {shape!r}")
    if any(not 0 <= d < 2**31 for d in shape):
        raise WorkloadError(f"{at} dimensions must be in [0, 2**31), got {shape!r}")
    return tuple(shape)


def _check_keys(table: Mapping[str, Any], allowed: set[str], at: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise WorkloadError(
            f"{at}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(allowed))}"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
