"""Arrival shapes end to end: a rate schedule (LoadGen, thinned), gamma arrivals and a replayed
trace (the timer), each checked against the law it should follow, on loopback against the
reference scheduler. Fixed seeds, so a failure reproduces."""
from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from fastload.arrivals.timer import gamma_offsets_s
from fastload.contract.rates import parse_schedule

from test_generator import in_issue_order, read_rows, run_fastload

SPIKE = "3s@100,2s@400,3s@100"


def issue_offsets_s(rows: list[dict[str, str]], start_mono_ns: int) -> np.ndarray:
    return np.array([int(r["issue_mono_ns"]) - start_mono_ns for r in rows]) / 1e9


def test_rate_schedule_is_an_exact_non_homogeneous_poisson_process(tmp_path, address):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--qps-schedule", SPIKE,
                                  "--seed", "21")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    schedule = parse_schedule(SPIKE)
    offsets = issue_offsets_s(rows, summary["start_mono_ns"])
    assert offsets.min() >= 0 and offsets.max() < schedule.duration_ms / 1000

    # Time rescaling: Λ(t_i) - Λ(t_i-1) of a Poisson process with rate λ(t) are Exp(1).
    rescaled = np.diff([0.0, *(schedule.arrivals_by(t) for t in offsets)])
    ks = stats.kstest(rescaled, "expon")
    assert ks.pvalue > 1e-3, f"rescaled gaps vs Exp(1): KS p = {ks.pvalue:.2g}"

    # Counts per phase match the schedule, and the CSV and summary say which phase is which.
    by_phase = Counter(int(r["phase"]) for r in rows)
    for index, phase in enumerate(schedule.phases):
        expected = phase.qps * phase.duration_ms / 1000
        assert abs(by_phase[index] - expected) < 4.5 * math.sqrt(expected), (index, by_phase)
        assert summary["phases"][index]["count"] == by_phase[index]
    for row, t_s in zip(rows, offsets):
        assert int(row["phase"]) == schedule.phase_index(t_s)
        assert float(row["target_qps_at_issue"]) == schedule.rate_at(t_s)
    assert "tier1_%" in proc.stdout and "2s@400" not in proc.stdout  # phases as a table


@pytest.mark.parametrize("spec, shape", [("8s@200", 0.25), (SPIKE, 1.0), (SPIKE, 0.25),
                                         ("4s@50..400", 4.0)])
def test_gamma_plan_follows_the_gamma_law_in_operational_time(spec, shape):
    schedule = parse_schedule(spec)
    offsets = gamma_offsets_s(schedule, shape, seed=7)
    assert offsets.min() >= 0 and offsets.max() < schedule.duration_ms / 1000
    operational = np.array([schedule.arrivals_by(t) for t in offsets])
    ks = stats.kstest(np.diff(operational, prepend=0.0), "gamma", args=(shape, 0, 1 / shape))
    assert ks.pvalue > 1e-3, f"operational-time gaps vs gamma({shape}): KS p = {ks.pvalue:.2g}"
    expected = schedule.expected_arrivals
    assert abs(len(offsets) - expected) < 4.5 * math.sqrt(expected / shape) + 2


def test_gamma_arrivals_are_issued_on_plan_with_the_asked_burstiness(tmp_path, address):
    shape, qps, seed = 0.25, 200, 22
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--total-qps", str(qps),
                                  "--duration-ms", "8000", "--burstiness", str(shape),
                                  "--seed", str(seed))
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    planned = gamma_offsets_s(parse_schedule(f"8s@{qps}"), shape, seed)
    assert len(rows) == len(planned) and {r["issuer"] for r in rows} == {"gamma"}
    late_ms = (issue_offsets_s(rows, summary["start_mono_ns"]) - planned) * 1000
    assert np.percentile(np.abs(late_ms), 99) < 1.0, f"p99 |issue - plan| {late_ms}"
    gaps = np.diff(np.array([int(r["issue_mono_ns"]) for r in rows])) / 1e9
    cv = gaps.std() / gaps.mean()
    # The standard error of a sample CV from gamma gaps (excess kurtosis 6/k), four of them.
    tolerance = 4 * (1 / math.sqrt(shape)) * math.sqrt((6 / shape + 2) / (4 * len(gaps)))
    assert abs(cv - 1 / math.sqrt(shape)) < tolerance, f"inter-arrival CV {cv:.2f}, expected 2"
    assert "LoadGen result none (arrivals from fastload's timer)" in proc.stdout


def test_trace_replays_times_classes_and_models(tmp_path, address):
    rng = np.random.default_rng(23)
    offsets_ms = np.sort(rng.uniform(0, 3000, 300)).round(3)
    trace = tmp_path / "trace.csv"
    lines = ["Timestamp,tier,slo,model"]
    for i, t_ms in enumerate(offsets_ms):
        fixed = ("2", "normal", "vit") if i % 3 == 0 else ("1", "urgent", "") if i % 3 == 1 \
            else ("", "", "")
        lines.append(f"{1_000_000 + t_ms},{','.join(fixed)}")
    trace.write_text("\n".join(lines) + "\n")
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--arrival-trace",
                                  str(trace), "--trace-speed", "2", "--seed", "24")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    assert len(rows) == len(offsets_ms)
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    issued_ms = issue_offsets_s(rows, summary["start_mono_ns"]) * 1000
    late_ms = issued_ms - (offsets_ms - offsets_ms[0]) / 2
    assert np.percentile(np.abs(late_ms), 99) < 1.0, f"p99 |issue - trace| {late_ms}"
    for i, row in enumerate(rows):
        if i % 3 == 0:
            assert (row["tier"], row["slo"], row["model"]) == ("2", "normal", "vit")
        elif i % 3 == 1:
            assert (row["tier"], row["slo"], row["model"]) == ("1", "urgent", "resnet50")
    drawn = {(r["tier"], r["slo"]) for i, r in enumerate(rows) if i % 3 == 2}
    assert len(drawn) > 3  # the workload mix drew these
    assert all(r["target_qps_at_issue"] == "" for r in rows)


def test_iso_timestamps_in_json_lines(tmp_path, address):
    trace = tmp_path / "azure.jsonl"
    trace.write_text("".join(
        json.dumps({"TIMESTAMP": f"2023-11-16 18:15:{46 + i // 10}.{i % 10}123456",
                    "ContextTokens": 100}) + "\n" for i in range(20)))
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--arrival-trace",
                                  str(trace), "--trace-speed", "4")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    issued_s = issue_offsets_s(rows, summary["start_mono_ns"])
    assert np.abs(issued_s - np.arange(20) * 0.1 / 4).max() < 0.005


@pytest.mark.parametrize("args, message", [
    (("--qps-schedule", "5s@100", "--total-qps", "50"), "drop --total-qps"),
    (("--qps-schedule", "5s@100", "--duration-ms", "50"), "drop --duration-ms"),
    (("--qps-schedule", "5x@100"), "--qps-schedule '5x@100': phase 1"),
    (("--burstiness", "0"), "--burstiness must be a positive number"),
    (("--burstiness", "0.5", "--loadgen-per-class"), "--loadgen-per-class needs LoadGen"),
    (("--trace-speed", "2"), "--trace-speed needs --arrival-trace"),
    (("--arrival-trace", "{bad}", "--total-qps", "5"), "drop --total-qps"),
    (("--arrival-trace", "{missing}"), "cannot read it"),
    (("--arrival-trace", "{bad}"), "line 3: timestamp goes back in time"),
    (("--arrival-trace", "{junk}"), "line 2: timestamp 'soon' is neither"),
    (("--arrival-trace", "{unknown}"), "line 2: tier 7 slo 'urgent' is not a class"),
])
def test_bad_shapes_exit_2_with_one_line(tmp_path, args, message):
    files = {"bad": "timestamp\n5\n4\n", "junk": "timestamp\nsoon\n",
             "unknown": "timestamp,tier,slo\n1,7,urgent\n"}
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    args = [a.format(**{n: str(tmp_path / f"{n}.csv") for n in (*files, "missing")})
            for a in args]
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", "127.0.0.1:1", *args,
                                  timeout_s=30)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not csv_path.exists()
