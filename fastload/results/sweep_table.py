"""A sweep's results: each point's entry in sweep.json (its files and its summary's rows), the
file itself, and the table of every point and class."""
from __future__ import annotations

import json
from pathlib import Path

from fastload.contract.config import RunConfig
from fastload.results.certificate import CLIENT_LIMITED
from fastload.results.sweep_stats import aggregate, priority_effect


def sweep_point(series: str, workload: str, policy: str | None, qps: float, config: RunConfig,
                code: int, output_dir: Path) -> dict:
    """A point's entry in sweep.json: its files (relative to the sweep's folder, so it can
    move) and its summary's rows."""
    summary = (json.loads(config.summary_json.read_text())
               if config.summary_json.exists() else None)
    return {"series": series, "workload": workload, "policy": policy,
            "target_qps": qps, "exit_code": code,
            "csv": str(config.records_path.relative_to(output_dir)),  # or its Parquet
            "json": str(config.summary_json.relative_to(output_dir)),
            "overall": summary["overall"] if summary else None,
            "classes": summary["classes"] if summary else [],
            "load": ({key: summary["load"][key] for key in ("verdict", "reason")}
                     if summary and summary.get("load") else None)}


def write_sweep(output_dir: Path, points: list[dict], rates: list[float],
                series: list[str]) -> None:
    """sweep.json in ``output_dir`` (every run, the means and 95 % intervals over repeats, the
    priority signal's effect), and the tables and the verdict on stdout."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / "sweep.json"
    means = aggregate(points, output_dir)
    effects = priority_effect(points, output_dir)
    path.write_text(json.dumps({"rates": rates, "series": series, "points": points,
                                "means": means, "priority_effect": effects},
                               indent=2) + "\n", encoding="utf-8")
    print(format_table(points))
    if means:
        print(format_means(means))
    for base, effect in effects.items():
        print(f"sweep: priority {effect['verdict']} ({base}): {effect['why']}")
    limited = [f"{p['series']} at {p['target_qps']:g} QPS" for p in points if client_limited(p)]
    if limited:
        print(f"sweep: client-limited, so not the server's result (exit 8): "
              f"{', '.join(limited)}")
    print(f"sweep: {len(points)} points; {path}", flush=True)


def client_limited(point: dict) -> bool:
    """Whether a sweep point's load certificate found the client the bottleneck."""
    return bool(point.get("load")) and point["load"]["verdict"] == CLIENT_LIMITED


def format_table(points: list[dict]) -> str:
    """One row per point and class (then the point's overall row)."""
    header = (f"{'series':<18} {'qps':>7} {'tier':>4} {'slo':<8} {'achieved':>9} "
              f"{'p50_ms':>9} {'p99_ms':>9} {'slo_%':>6} {'errors':>6} {'exit':>4}")
    lines = [header, "-" * len(header)]
    for point in points:
        for row in [*point["classes"], *([point["overall"]] if point["overall"] else [])]:
            lines.append(
                f"{point['series']:<18} {point['target_qps']:>7g} {row['tier']!s:>4} "
                f"{row['slo']:<8} {_num(row['achieved_qps'], 1):>9} {_num(row['p50_ms'], 2):>9} "
                f"{_num(row['p99_ms'], 2):>9} {_num(row['slo_attainment_pct'], 1):>6} "
                f"{row['errors']:>6} {point['exit_code']:>4}")
    return "\n".join(lines)


def format_means(means: list[dict]) -> str:
    """One row per point and class: means over repeats with their 95 % intervals (one run:
    attainment's from its 1-second batches, none for p50 and p99)."""
    header = (f"{'series':<24} {'qps':>7} {'tier':>4} {'slo':<8} {'n':>3} "
              f"{'slo_% [95 % CI]':>22} {'p50_ms [95 % CI]':>30} {'p99_ms [95 % CI]':>30}")
    lines = [header, "-" * len(header)]
    for point in means:
        for row in point["rows"]:
            lines.append(f"{point['series']:<24} {point['target_qps']:>7g} {row['tier']!s:>4} "
                         f"{row['slo']:<8} {point['repeats']:>3} "
                         f"{_with_interval(row['slo_attainment_pct'], 1):>22} "
                         f"{_with_interval(row['p50_ms'], 2):>30} "
                         f"{_with_interval(row['p99_ms'], 2):>30}")
    return "\n".join(lines)


def _with_interval(interval: dict, digits: int) -> str:
    text = _num(interval["mean"], digits)
    if interval["low"] is not None:
        text += f" [{interval['low']:.{digits}f}, {interval['high']:.{digits}f}]"
    return text


def _num(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
