"""End to end: `python -m fastload` through the real LoadGen against a real scheduler on loopback."""
from __future__ import annotations

import csv
import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fastload.contract.workload import builtin_workload
from fastload.records.row import CSV_COLUMNS

SPEC_COLUMNS = ["timestamp_issued", "sample_id", "tier", "slo", "model", "latency_ns",
                "latency_ms", "slo_met"]


def run_fastload(tmp_path: Path, *args: str, timeout_s: float = 120) -> tuple[subprocess.CompletedProcess, Path]:
    """Run the CLI in a subprocess, outputs under tmp_path; returns the process and the CSV path."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv_path = tmp_path / "out" / "metrics.csv"
    cmd = [sys.executable, "-m", "fastload", "--metrics-csv", str(csv_path),
           "--output-dir", str(tmp_path / "logs"), "--min-query-count", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=tmp_path)
    return proc, csv_path


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    """The CSV's rows in file order (the order samples completed)."""
    with open(csv_path, newline="") as f:
        return list(csv.DictReader(f))


def in_issue_order(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows sorted by sample_id, checking that ids are 0..n-1 and follow issue times."""
    ordered = sorted(rows, key=lambda r: int(r["sample_id"]))
    assert [int(r["sample_id"]) for r in ordered] == list(range(len(rows)))
    issue_ns = [int(r["issue_mono_ns"]) for r in ordered]
    assert issue_ns == sorted(issue_ns), "sample_id order differs from issue order"
    return ordered


def chi2_pvalue(observed: list[int], expected_fractions: list[float]) -> float:
    """Pearson chi-square goodness of fit p-value (Wilson-Hilferty approximation, no scipy)."""
    n = sum(observed)
    stat = sum((o - n * p) ** 2 / (n * p) for o, p in zip(observed, expected_fractions))
    k = len(observed) - 1
    z = ((stat / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
    return 0.5 * math.erfc(z / math.sqrt(2))


def loadgen_query_count(log_dir: Path) -> int:
    """How many queries LoadGen says it generated (one sample each in the Server scenario)."""
    detail = (log_dir / "mlperf_log_detail.txt").read_text()
    match = re.search(r'"key": "generated_query_count", "value": (\d+)', detail)
    assert match, "LoadGen's detail log has no generated_query_count"
    return int(match.group(1))


def check_summary_against_rows(summary: dict, rows: list[dict[str, str]]) -> None:
    """The JSON summary, kept in bounded memory during the run, against the CSV's rows: counts,
    errors and attainment exactly, percentiles within 1 % of numpy's exact nearest-rank ones,
    and each class's rate over its own issue span."""
    groups = {(c["tier"], c["slo"]): c for c in summary["classes"]}
    groups[("all", "all")] = summary["overall"]
    for (tier, slo), row in groups.items():
        members = [r for r in rows
                   if (tier, slo) in (("all", "all"), (int(r["tier"]), r["slo"]))]
        assert row["count"] == len(members), (tier, slo)
        assert row["errors"] == sum(r["status"] != "OK" for r in members)
        met = sum(r["slo_met"] == "True" for r in members)
        assert row["slo_attainment_pct"] == pytest.approx(100 * met / len(members))
        latencies = np.array([int(r["latency_ns"]) for r in members if r["status"] == "OK"])
        for q in (50, 95, 99):
            exact_ms = np.percentile(latencies, q, method="inverted_cdf") / 1e6
            assert row[f"p{q}_ms"] == pytest.approx(exact_ms, rel=0.01), (tier, slo, q)
        issue_s = sorted(int(r["issue_mono_ns"]) / 1e9 for r in members)
        own_rate = (len(issue_s) - 1) / (issue_s[-1] - issue_s[0])
        assert row["achieved_qps"] == pytest.approx(own_rate, rel=1e-6), (tier, slo)


def test_default_run_records_every_sample_with_the_spec_mix(tmp_path, address):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--total-qps", "300",
                                  "--duration-ms", "5000", "--seed", "11",
                                  "--workload", "urgent_heavy")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(csv_path)
    with open(csv_path, newline="") as f:
        header = next(csv.reader(f))
    assert header[:8] == SPEC_COLUMNS and tuple(header) == CSV_COLUMNS

    # Every sample LoadGen issued is recorded once, and every one was answered.
    in_issue_order(rows)
    assert len({r["loadgen_sample_id"] for r in rows}) == len(rows)
    assert len(rows) == loadgen_query_count(tmp_path / "logs")
    assert {r["status"] for r in rows} == {"OK"}
    assert all(r["slo_met"] == "True" for r in rows)

    # Deadlines count from LoadGen's issue, never from a late send.
    workload = builtin_workload("urgent_heavy")
    slo_ns = {(c.tier, c.slo): c.slo_ns for c in workload.classes}
    for r in rows:
        assert int(r["deadline_ns"]) == int(r["timestamp_issued"]) + slo_ns[(int(r["tier"]), r["slo"])]
        assert int(r["send_lag_ns"]) >= 0
        assert int(r["latency_ns"]) >= int(r["send_lag_ns"])

    # Class mix: one Poisson stream split by independent draws with the workload's fractions.
    counts = Counter((int(r["tier"]), r["slo"]) for r in rows)
    keys = [(c.tier, c.slo) for c in workload.classes]
    assert chi2_pvalue([counts[k] for k in keys], [c.fraction for c in workload.classes]) > 1e-3

    # Model mix: urgent -> resnet50 only; normal/relaxed 70/30 resnet50/vit.
    assert {r["model"] for r in rows if r["slo"] == "urgent"} == {"resnet50"}
    others = [r["model"] for r in rows if r["slo"] != "urgent"]
    vit_share = others.count("vit") / len(others)
    assert abs(vit_share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(others))

    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["seed"] == 11 and summary["loadgen_valid"] is True
    check_summary_against_rows(summary, rows)
    assert abs(summary["overall"]["achieved_qps"] - 300) < 0.1 * 300
    assert "tier1_urgent" not in {p.name for p in (tmp_path / "logs").iterdir()}
    assert "slo_attainment_%" in proc.stdout and "LoadGen result VALID" in proc.stdout


def test_issue_times_are_poisson_at_300_qps(tmp_path, address):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--total-qps", "300",
                                  "--duration-ms", "10000", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    issue_ns = np.sort(np.array([int(r["issue_mono_ns"]) for r in read_rows(csv_path)]))
    gaps = np.diff(issue_ns).astype(np.float64)
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1.0) < 3.5 / math.sqrt(len(gaps)), f"inter-arrival CV {cv:.3f} over {len(gaps)}"


def test_same_seed_gives_the_same_class_and_model_sequence(tmp_path, address):
    sequences = []
    for attempt in ("a", "b"):
        proc, csv_path = run_fastload(tmp_path / attempt, "--scheduler-url", address,
                                      "--total-qps", "200", "--duration-ms", "1500",
                                      "--seed", "1234")
        assert proc.returncode == 0, proc.stderr
        sequences.append([(r["tier"], r["slo"], r["model"])
                          for r in in_issue_order(read_rows(csv_path))])
    n = min(map(len, sequences))
    assert n > 100 and sequences[0][:n] == sequences[1][:n]


def test_per_class_mode_keeps_the_mix_for_the_whole_run(tmp_path, address):
    """batch_heavy at 150 QPS for 8 s: its four 7.5-QPS classes need 13 s to reach 100 queries
    each, which used to leave the other classes stopped for the last 5 s."""
    total_qps, duration_s = 150, 8
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address,
                                  "--total-qps", str(total_qps), "--duration-ms", "8000",
                                  "--min-query-count", "100", "--workload", "batch_heavy",
                                  "--seed", "5", "--loadgen-per-class")
    assert proc.returncode == 0, proc.stderr
    rows = in_issue_order(read_rows(csv_path))
    workload = builtin_workload("batch_heavy")
    labels = {c.label for c in workload.classes}
    for label in labels:
        assert (tmp_path / "logs" / label / "mlperf_log_summary.txt").is_file(), label
    # Each process serves one class only, and the merged CSV holds them all but LoadGen's last
    # query of each test, which LoadGen schedules past the duration and fastload cuts.
    assert {r["issuer"] for r in rows} == labels
    issued = sum(loadgen_query_count(tmp_path / "logs" / label) for label in labels)
    assert issued - 2 * len(labels) <= len(rows) <= issued - len(labels)
    assert all(r["issuer"] == f"tier{r['tier']}_{r['slo']}" for r in rows)

    # The merged stream is Poisson at the total rate, over the run's duration.
    issue_s = np.array([int(r["issue_mono_ns"]) for r in rows]) / 1e9
    gaps = np.diff(issue_s)
    cv = gaps.std() / gaps.mean()
    assert abs(cv - 1.0) < 3.5 / math.sqrt(len(gaps)), f"merged inter-arrival CV {cv:.3f}"
    expected = total_qps * duration_s
    assert abs(len(rows) - expected) < 4.5 * math.sqrt(expected), len(rows)
    run_start, run_end = issue_s[0], issue_s[-1]
    assert run_end - run_start < duration_s + 0.5

    # Every class issues from start to end of that period, at its own rate.
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    check_summary_against_rows(summary, rows)
    achieved = {(c["tier"], c["slo"]): c["achieved_qps"] for c in summary["classes"]}
    offsets = {}
    for cls in workload.classes:
        rate = total_qps * cls.fraction
        times = np.array([int(r["issue_mono_ns"]) for r in rows if r["issuer"] == cls.label]) / 1e9
        # A gap of 15 mean inter-arrivals happens with probability e**-15.
        assert times[0] - run_start < 15 / rate and run_end - times[-1] < 15 / rate, cls.label
        assert abs(len(times) - rate * duration_s) < 4.5 * math.sqrt(rate * duration_s)
        assert abs(achieved[(cls.tier, cls.slo)] - rate) < 5 * rate / math.sqrt(len(times))
        offsets[cls.label] = tuple(np.diff(times[:20]))
    # Distinct seeds: no two classes share an arrival schedule.
    assert len(set(offsets.values())) == len(labels)


def test_invalid_loadgen_result_comes_with_its_reason(tmp_path, start_scheduler):
    # Every request takes 300 ms against LoadGen's 100 ms target (the one class's SLO).
    scheduler = start_scheduler("--gpus", "64", "--service-ms", "resnet50=300")
    workload_file = tmp_path / "urgent.toml"
    workload_file.write_text('[models.resnet50]\nshape = [1, 3, 8, 8]\n'
                             '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 1.0\n')
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", scheduler.address,
                                  "--total-qps", "50", "--duration-ms", "2000",
                                  "--workload-file", str(workload_file))
    assert proc.returncode == 0, proc.stderr
    assert "LoadGen result INVALID" in proc.stdout
    reason = re.search(r"LoadGen test all INVALID: performance constraints not satisfied "
                       r"\(99th percentile latency ([\d.]+) ms > target 100 ms\)", proc.stdout)
    assert reason, proc.stdout
    assert float(reason.group(1)) >= 300
    assert "LoadGen recommends: Reduce target QPS to improve latency." in proc.stdout
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["loadgen_valid"] is False
    [verdict] = summary["loadgen_verdicts"]
    assert verdict["test"] == "all" and verdict["valid"] is False
    assert verdict["reasons"][0].startswith("performance constraints not satisfied (99th")


def test_unreachable_scheduler_fails_fast_without_writing_outputs(tmp_path):
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", "127.0.0.1:1",
                                  "--duration-ms", "1000", timeout_s=30)
    assert proc.returncode == 3
    assert "127.0.0.1:1" in proc.stderr and "fastload.scheduler" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not csv_path.exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("args, message", [
    (("--total-qps", "0"), "--total-qps must be a positive number"),
    (("--total-qps", "-5"), "--total-qps must be a positive number"),
    (("--total-qps", "abc"), "invalid float value"),
    (("--duration-ms", "0"), "--duration-ms must be > 0"),
    (("--workload", "nope"), "invalid choice"),
    (("--scheduler-url", "localhost"), "--scheduler-url must be host:port"),
    (("--scheduler-url", "host:99999"), "--scheduler-url must be host:port"),
    (("--timeout-ms", "-1"), "--timeout-ms must be > 0"),
    (("--max-lag-ms", "0"), "--max-lag-ms must be a positive number"),
    (("--max-sender-busy", "-90"), "--max-sender-busy must be a positive number"),
    (("--rate-sigmas", "inf"), "--rate-sigmas must be a positive number"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    proc, csv_path = run_fastload(tmp_path, *args, timeout_s=30)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not csv_path.exists()


def test_workload_file_sets_classes_and_shapes(tmp_path, address):
    workload_file = tmp_path / "mix.toml"
    workload_file.write_text(
        'name = "two_class"\n'
        "[models.resnet50]\nshape = [1, 3, 32, 32]\n"
        '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.5\n'
        '[[classes]]\ntier = 3\nslo = "batch"\nslo_ms = 3000\nfraction = 0.5\n'
        "models = { resnet50 = 1.0 }\n"
    )
    proc, csv_path = run_fastload(tmp_path, "--scheduler-url", address, "--total-qps", "100",
                                  "--duration-ms", "1500", "--workload-file", str(workload_file))
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(csv_path)
    assert {(r["tier"], r["slo"]) for r in rows} == {("1", "urgent"), ("3", "batch")}
    assert {r["status"] for r in rows} == {"OK"}
    batch = [r for r in rows if r["slo"] == "batch"]
    assert all(int(r["deadline_ns"]) - int(r["timestamp_issued"]) == 3_000_000_000 for r in batch)
    assert json.loads(csv_path.with_suffix(".json").read_text())["workload"] == "two_class"
