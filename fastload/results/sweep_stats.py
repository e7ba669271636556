"""A sweep's repeats folded into means with 95 % confidence intervals, and the effect of the
priority signal: what sending each request's own tier (as-is) buys each class over sending all
the same (equal), paired repeat by repeat, with a verdict on whether the server honours priority.

With --repeats N >= 2 every interval is Student's t over the N repeats (seeds seed .. seed+N-1,
the same for every condition, so as-is and equal runs pair up). With one run per point, SLO
attainment gets the t interval over the run's 1-second batches of issue time (its difference
too, batch by batch: the same seed plans the same arrivals for both signals), and p50 and p99 get
none: a per-second p99 is another quantity (a bin of 30 samples has its maximum as p99).
"""
from __future__ import annotations

import math
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from fastload.contract.signals import AS_IS, EQUAL
from fastload.records.reader import read_columns
from fastload.results.intervals import (
    Interval,
    batch_attainment,
    clipped,
    paired_interval,
    point_interval,
)
from fastload.results.runs import slo_order

# A point is loaded enough to tell whether priority is honoured when, with every request at the
# same priority, some class meets its SLO less often than this.
LOADED_BELOW_PCT = 99.0
# The smallest gain in SLO attainment (points) the verdict looks for: "honoured" needs one this
# large beyond its interval, "ignored" intervals that rule one out. Smaller, significant
# differences are left to the per-class figures: two runs of a FIFO server at one seed differ by
# a few points of timing noise, which 1-second batches can make look significant.
MIN_EFFECT_POINTS = 10.0
HONOURED, IGNORED, UNDETERMINED = "honoured", "ignored", "undetermined"
STATISTICS = ("slo_attainment_pct", "p50_ms", "p99_ms")


def aggregate(points: Sequence[dict], output_dir: Path) -> list[dict]:
    """Per series and rate: each class's (and the overall row's) mean and 95 % interval of
    attainment, p50 and p99 over the point's repeats."""
    return [{"series": series, "target_qps": qps, "repeats": len(runs),
             "rows": [{"tier": tier, "slo": slo, **{
                 name: asdict(_interval(runs, tier, slo, name, output_dir))
                 for name in STATISTICS}} for tier, slo in _rows(runs)]}
            for (series, qps), runs in _by_point(points).items()]


def priority_effect(points: Sequence[dict], output_dir: Path) -> dict[str, dict]:
    """For every pair of series that differ only in the signal (as-is and equal): per rate and
    class, as-is − equal in attainment and p99 with 95 % intervals, and the verdict."""
    by_point = _by_point(points)
    pairs: dict[str, list[tuple[float, list[dict], list[dict]]]] = {}
    for (series, qps), runs in by_point.items():
        control = next((r for (_, q), r in by_point.items()
                        if q == qps and r[0].get("signal") == EQUAL
                        and r[0]["base_series"] == runs[0]["base_series"]), None)
        if runs[0].get("signal") == AS_IS and control is not None:
            pairs.setdefault(runs[0]["base_series"], []).append((qps, runs, control))
    effects = {}
    for base, rates in pairs.items():
        effect = [_effect_at(qps, treated, control, output_dir)
                  for qps, treated, control in rates]
        _add_family_intervals(effect, rates, output_dir)
        effects[base] = {"as_is": rates[0][1][0]["series"], "equal": rates[0][2][0]["series"],
                         "rates": effect, **_verdict(effect)}
    return effects


def _effect_at(qps: float, treated: list[dict], control: list[dict], output_dir: Path) -> dict:
    rows = []
    for tier, slo in _rows(control):
        equal = _interval(control, tier, slo, "slo_attainment_pct", output_dir)
        rows.append({"tier": tier, "slo": slo, "equal_attainment_pct": equal.mean,
                     "attainment_gain": asdict(_difference(treated, control, tier, slo,
                                                           "slo_attainment_pct", output_dir)),
                     "p99_change_ms": asdict(_difference(treated, control, tier, slo,
                                                         "p99_ms", output_dir))})
    loaded = any(r["equal_attainment_pct"] is not None
                 and r["equal_attainment_pct"] < LOADED_BELOW_PCT
                 for r in rows if r["tier"] != "all")
    return {"target_qps": qps, "loaded": loaded, "rows": rows}


def _add_family_intervals(effect: list[dict], rates: list[tuple[float, list[dict], list[dict]]],
                          output_dir: Path) -> None:
    """The intervals the verdict reads: every class at every loaded rate at once, 95 % for the
    whole family (Bonferroni), so that nine classes at a few rates do not find a gain by
    chance (nine separate 95 % intervals miss zero by chance a third of the time)."""
    loaded = [(at, treated, control) for at, (_, treated, control) in zip(effect, rates)
              if at["loaded"]]
    family = sum(row["tier"] != "all" for at, _, _ in loaded for row in at["rows"])
    for at, treated, control in loaded:
        for row in at["rows"]:
            if row["tier"] != "all":
                row["attainment_gain_family"] = asdict(_difference(
                    treated, control, row["tier"], row["slo"], "slo_attainment_pct", output_dir,
                    1 - 0.05 / family))


def _verdict(rates: list[dict]) -> dict:
    """honoured: at a loaded rate some class gains at least MIN_EFFECT_POINTS of attainment, its
    family interval above zero; ignored: at every loaded rate every class's family interval lies
    within ±MIN_EFFECT_POINTS; undetermined otherwise (no rate loaded, intervals too wide, or
    only losses)."""
    loaded = [r for r in rates if r["loaded"]]
    if not loaded:
        top = max(r["target_qps"] for r in rates)
        return {"verdict": UNDETERMINED,
                "why": f"with equal priority every class met its SLO at least "
                       f"{LOADED_BELOW_PCT:g} % of the time at every rate; sweep rates above "
                       f"{top:g} QPS, where the server misses SLOs"}
    judged = [(r["target_qps"], row["attainment_gain_family"], row)
              for r in loaded for row in r["rows"] if row["tier"] != "all"]
    gains = [(qps, gain, row) for qps, gain, row in judged
             if gain["low"] is not None and gain["low"] > 0 and gain["mean"] >= MIN_EFFECT_POINTS]
    if gains:
        qps, gain, row = max(gains, key=lambda g: g[1]["low"])
        return {"verdict": HONOURED,
                "why": f"tier {row['tier']} {row['slo']} gains {gain['mean']:+.1f} points of "
                       f"SLO attainment (family-wise 95 % CI {gain['low']:+.1f} to "
                       f"{gain['high']:+.1f}) at {qps:g} QPS"}
    rates_text = ", ".join(f"{r['target_qps']:g}" for r in loaded)
    reach = max((max(abs(g["low"]), abs(g["high"])) if g["low"] is not None else math.inf)
                for _, g, _ in judged)
    if reach <= MIN_EFFECT_POINTS:
        return {"verdict": IGNORED,
                "why": f"no class's SLO attainment changes by {MIN_EFFECT_POINTS:g} points or "
                       f"more at {rates_text} QPS, where with equal priority some class misses "
                       f"its SLO (family-wise 95 % CIs within ±{reach:.1f} points)"}
    return {"verdict": UNDETERMINED,
            "why": f"at {rates_text} QPS no class gains {MIN_EFFECT_POINTS:g} points with "
                   f"priority beyond its family-wise 95 % CI, but the intervals reach "
                   f"±{reach:.1f} points: too wide to rule it out; add repeats"}


def _by_point(points: Iterable[dict]) -> dict[tuple[str, float], list[dict]]:
    """The runs of each (series, rate) that reached traffic, in repeat order."""
    grouped: dict[tuple[str, float], list[dict]] = {}
    for point in points:
        if point["overall"] is not None:
            grouped.setdefault((point["series"], point["target_qps"]), []).append(point)
    return {key: sorted(runs, key=lambda p: p.get("repeat", 0)) for key, runs in grouped.items()}


def _rows(runs: list[dict]) -> list[tuple[int | str, str]]:
    rows = {(c["tier"], c["slo"]) for run in runs for c in run["classes"]}
    return [*sorted(rows, key=lambda r: (r[0], slo_order(r[1]))), ("all", "all")]


def _value(run: dict, tier: int | str, slo: str, name: str) -> float | None:
    row = (run["overall"] if tier == "all"
           else next((c for c in run["classes"] if (c["tier"], c["slo"]) == (tier, slo)), None))
    value = row[name] if row is not None else None
    return None if value is None or value != value else value  # NaN: no sample answered


def _interval(runs: list[dict], tier: int | str, slo: str, name: str,
              output_dir: Path) -> Interval:
    attainment = name == "slo_attainment_pct"
    interval = point_interval([_value(r, tier, slo, name) for r in runs],
                              (lambda: _batches(runs[0], tier, slo, output_dir)) if attainment
                              else None)
    return clipped(interval, 0.0, 100.0) if attainment else interval


def _difference(treated: list[dict], control: list[dict], tier: int | str, slo: str, name: str,
                output_dir: Path, confidence: float = 0.95) -> Interval:
    by_seed = {r["seed"]: r for r in control}
    pairs = ([(r, by_seed[r["seed"]]) for r in treated if r["seed"] in by_seed]
             if len(treated) > 1 else [(treated[0], control[0])])
    attainment = name == "slo_attainment_pct"
    difference = paired_interval(
        [_value(a, tier, slo, name) for a, _ in pairs],
        [_value(b, tier, slo, name) for _, b in pairs],
        (lambda: (_batches(treated[0], tier, slo, output_dir),
                  _batches(control[0], tier, slo, output_dir))) if attainment else None,
        confidence)
    return clipped(difference, -100.0, 100.0) if attainment else difference


def _batches(run: dict, tier: int | str, slo: str, output_dir: Path) -> list[float | None]:
    """SLO attainment % of one class (or all) per batch of issue time, from the run's CSV."""
    columns = _columns(output_dir / run["csv"])
    mask = (np.ones(len(columns["tier"]), bool) if tier == "all"
            else (columns["tier"] == tier) & (columns["slo"] == slo))
    return batch_attainment(columns["issue_mono_ns"], columns["slo_met"], mask)


@lru_cache(maxsize=4)
def _columns(csv_path: Path) -> dict[str, np.ndarray]:
    """A run's columns for its batches, read once for all its classes."""
    return read_columns(csv_path, ("tier", "slo", "slo_met", "issue_mono_ns"))
