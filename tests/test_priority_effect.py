"""fastload.sweep with repeats and the priority signal as an axis: paired seeds, means with 95 %
intervals, and the verdict on whether a real scheduler honours priority."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_sweep_report import WORKLOAD, run_module

from fastload.results.figures import attainment_gain
from fastload.results.intervals import mean_interval, paired_difference, t_quantile
from fastload.results.runs import load_runs


@pytest.mark.parametrize("dof, expected", [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262),
                                           (30, 2.042), (120, 1.980)])
def test_t_quantiles_match_the_tables(dof, expected):
    assert t_quantile(0.95, dof) == pytest.approx(expected, abs=5e-4)


def test_intervals_are_t_intervals_of_the_mean_and_of_paired_differences():
    values = [91.0, 95.5, 93.25]
    interval = mean_interval(values, "repeats")
    half = 4.303 * np.std(values, ddof=1) / math.sqrt(3)
    assert (interval.mean, interval.n) == (pytest.approx(np.mean(values)), 3)
    assert interval.low == pytest.approx(np.mean(values) - half, abs=1e-3)
    assert interval.high == pytest.approx(np.mean(values) + half, abs=1e-3)
    # Pairs share a seed: their difference varies less than either side.
    difference = paired_difference([90, 80, 70, None], [60, 51, 39, 10], "repeats")
    assert difference.n == 3 and difference.mean == pytest.approx(30)
    assert difference.excludes_zero
    assert mean_interval([5.0], "repeats").low is None  # one value: no interval


def test_priority_is_honoured_by_the_priority_scheduler_and_ignored_by_fifo(tmp_path: Path):
    """One simulated GPU (200 QPS of capacity) at 300 QPS: with every request at the same
    priority tier 1 misses its SLO; the priority policy keeps it, fifo cannot tell the tiers
    apart. One run per condition: intervals from 1-second batches, paired by time."""
    (tmp_path / "small.toml").write_text(WORKLOAD)
    proc = run_module("fastload.sweep", "--qps", "300", "--workload", "small.toml",
                      "--embedded", "--embedded-gpus", "1", "--embedded-policy", "fifo,priority",
                      "--priority-signal", "as-is,equal", "--duration-ms", "8000",
                      "--min-query-count", "1", "--seed", "5", "--quiet", "--output-dir", "out",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert {(p["series"], p["seed"], p["signal"]) for p in sweep["points"]} == {
        ("small-fifo-as-is", 5, "as-is"), ("small-fifo-equal", 5, "equal"),
        ("small-priority-as-is", 5, "as-is"), ("small-priority-equal", 5, "equal")}
    effects = sweep["priority_effect"]
    assert effects["small-priority"]["verdict"] == "honoured", effects["small-priority"]["why"]
    assert effects["small-fifo"]["verdict"] == "ignored", effects["small-fifo"]["why"]
    assert "sweep: priority honoured (small-priority): tier 1 urgent gains +" in proc.stdout
    assert ("sweep: priority ignored (small-fifo): no class's SLO attainment changes by "
            "10 points") in proc.stdout
    [at] = effects["small-priority"]["rates"]
    tier1 = next(r for r in at["rows"] if r["tier"] == 1)
    assert at["loaded"] and tier1["equal_attainment_pct"] < 99
    gain = tier1["attainment_gain"]
    assert gain["kind"] == "1 s batch means" and gain["low"] > 0 and gain["n"] >= 7
    # The family-wise interval the verdict reads is the wider one (both clipped to 100 points).
    family = tier1["attainment_gain_family"]
    assert family["low"] < gain["low"] and family["high"] >= gain["high"]
    assert family["high"] - family["low"] > gain["high"] - gain["low"]
    means = {(m["series"], r["tier"]): r for m in sweep["means"] for r in m["rows"]}
    attainment = means[("small-priority-as-is", 1)]["slo_attainment_pct"]
    assert attainment["kind"] == "1 s batch means" and 0 <= attainment["low"] <= \
        attainment["mean"] <= attainment["high"] <= 100
    assert means[("small-priority-as-is", 1)]["p99_ms"]["low"] is None  # none from one run
    assert "slo_% [95 % CI]" in proc.stdout  # the means table, from one run too
    # The report draws the effect with its band, from the CSVs.
    report = run_module("fastload.report", "out", "-o", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert page.count('<img alt="') == 4 and '<img alt="priority_effect"' in page
    assert (tmp_path / "r_priority_effect.png").stat().st_size > 20_000
    runs = load_runs([tmp_path / "out"], [])
    by = {(r.series, r.signal): r for r in runs}
    gain = attainment_gain([by[("small-priority-as-is", "as-is")]],
                           [by[("small-priority-equal", "equal")]], "1")
    assert gain.mean == pytest.approx(tier1["attainment_gain"]["mean"])
    assert gain.low == pytest.approx(tier1["attainment_gain"]["low"])


def test_repeats_pair_their_seeds_and_average_with_t_intervals(tmp_path: Path):
    (tmp_path / "small.toml").write_text(WORKLOAD)
    proc = run_module("fastload.sweep", "--qps", "100", "--workload", "small.toml",
                      "--embedded", "--embedded-gpus", "1", "--priority-signal", "as-is,equal",
                      "--repeats", "3", "--seed", "40", "--duration-ms", "1500",
                      "--min-query-count", "1", "--quiet", "--output-dir", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    points = sweep["points"]
    assert [(p["signal"], p["seed"]) for p in points] == [
        (signal, seed) for signal in ("as-is", "equal") for seed in (40, 41, 42)]
    assert {p["csv"] for p in points} == {f"small-{signal}/qps100_seed{seed}.csv"
                                          for signal in ("as-is", "equal")
                                          for seed in (40, 41, 42)}
    for mean in sweep["means"]:
        runs = [p for p in points if p["series"] == mean["series"]]
        overall = next(r for r in mean["rows"] if r["tier"] == "all")["p99_ms"]
        values = [p["overall"]["p99_ms"] for p in runs]
        half = 4.303 * np.std(values, ddof=1) / math.sqrt(3)
        assert mean["repeats"] == 3 and overall["kind"] == "repeats"
        assert overall["mean"] == pytest.approx(np.mean(values))
        assert overall["high"] - overall["mean"] == pytest.approx(half, rel=1e-3)  # 4.303: 4 digits
    # Below capacity nothing misses an SLO, so nothing can be told.
    effect = sweep["priority_effect"]["small"]
    assert effect["verdict"] == "undetermined" and "above 100 QPS" in effect["why"]
    assert "slo_% [95 % CI]" in proc.stdout and "p50_ms [95 % CI]" in proc.stdout
    report = run_module("fastload.report", "out", "-o", "r.html", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "r.html").read_text()
    assert "<h2>Means over repeats</h2>" in page
    # Below capacity as-is and equal both meet every SLO: the effect is drawn, at zero.
    assert '<img alt="priority_effect"' in page


@pytest.mark.parametrize("args, message", [
    (("--repeats", "0"), "--repeats must be >= 1"),
    (("--priority-signal", "as-is,loud"), "--priority-signal 'loud' is none of"),
    (("--seed", "-1"), "--seed must be >= 0"),
])
def test_bad_sweep_flags_exit_2(tmp_path: Path, args: tuple, message: str) -> None:
    proc = run_module("fastload.sweep", "--qps", "100", "--embedded", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99, 0.9994])
def test_t_quantiles_match_scipy(confidence):
    from scipy import stats
    for dof in (1, 2, 3, 5, 8, 13, 40, 200):
        assert t_quantile(confidence, dof) == pytest.approx(
            stats.t.ppf((1 + confidence) / 2, dof), rel=1e-9)
