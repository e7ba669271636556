"""Ray shard mode without Ray: the partition, the clock offsets, the merge, and the flags.

These run wherever fastload does; tests/test_ray.py runs real shards on a simulated cluster.
"""
from __future__ import annotations

import csv
import io
import math
import subprocess
import sys
import time

import numpy as np
import pytest

from fastload.arrivals.plans import arrival_plans
from fastload.commands.run import parse_config
from fastload.contract.arrival_times import DRAWN, TimedArrivals
from fastload.contract.exits import UsageError
from fastload.contract.workload import builtin_workload
from fastload.records.reader import read_columns
from fastload.results.stats import RunStats
from fastload.run.outputs import RunOutputs
from fastload.run.shards.clock import measure_offset
from fastload.run.shards.merge import MERGED_COLUMNS, ShardMerge
from fastload.run.shards.partition import shard_configs, split_arrivals


def test_poisson_shards_run_the_rate_over_k_with_seeds_of_their_own(tmp_path):
    config = parse_config(["--qps-schedule", "2s@300,1s@600", "--seed", "5", "--output-dir",
                           str(tmp_path / "logs"), "--min-query-count", "100"])
    shards = shard_configs(config, 3, "10.0.0.1:50051")
    assert [s.schedule.phases for s in shards] == [config.schedule.scaled(1 / 3).phases] * 3
    assert sum(s.schedule.mean_qps for s in shards) == pytest.approx(config.schedule.mean_qps)
    assert len({s.seed for s in shards} | {config.seed}) == 4
    assert {s.scheduler_url for s in shards} == {"10.0.0.1:50051"}
    assert [s.metrics_csv for s in shards] == [
        (tmp_path / "logs" / f"shard{k}" / "metrics.csv") for k in range(3)]
    assert all(s.min_query_count == 34 and s.trace is None and not s.progress for s in shards)
    # Distinct seeds give distinct LoadGen schedules.
    seeds = {arrival_plans(s)[0][0].loadgen_seeds() for s in shards}
    assert len(seeds) == 3


def test_gamma_shards_replay_one_central_plan_dealt_in_turn(tmp_path):
    config = parse_config(["--total-qps", "200", "--duration-ms", "2000", "--burstiness", "0.25",
                           "--seed", "8", "--output-dir", str(tmp_path)])
    central = arrival_plans(config)[0][0].arrivals()
    shards = shard_configs(config, 3, "127.0.0.1:1")
    parts = [s.trace.offsets_s for s in shards]
    assert [len(p) for p in parts] == [len(central.offsets_s[k::3]) for k in range(3)]
    assert np.array_equal(np.sort(np.concatenate(parts)), central.offsets_s)
    # Each shard's own plan replays its part and is still labelled (and drawn) as gamma.
    plans = [arrival_plans(s)[0][0] for s in shards]
    assert {p.label for p in plans} == {"gamma"}
    assert all(np.array_equal(p.arrivals().offsets_s, part) for p, part in zip(plans, parts))
    assert all(s.schedule.mean_qps == pytest.approx(200 / 3) for s in shards)


def test_trace_split_keeps_fixed_classes_and_needs_an_arrival_per_shard():
    arrivals = TimedArrivals(np.arange(5, dtype=float), np.array([0, DRAWN, 2, 0, 1]),
                             np.array([DRAWN, DRAWN, 0, 1, DRAWN]))
    parts = split_arrivals(arrivals, 2)
    assert parts[0].offsets_s.tolist() == [0, 2, 4] and parts[1].offsets_s.tolist() == [1, 3]
    assert parts[0].class_indices.tolist() == [0, 2, 1]
    assert parts[1].model_indices.tolist() == [DRAWN, 1]
    with pytest.raises(UsageError, match="--shards 6 is more than the 5 arrivals"):
        split_arrivals(arrivals, 6)


def test_clock_offset_is_the_midpoint_of_the_shortest_round_trip():
    """A shard 5 ms ahead (wall) and 2 s behind (monotonic), answering after 0-3 ms one way;
    the measured offsets must be within half the chosen round trip of the truth."""
    delays_s = iter([0.003, 0.0, 0.002, 0.001] * 2)

    def shard_clocks() -> tuple[int, int]:
        time.sleep(next(delays_s))
        return time.time_ns() + 5_000_000, time.monotonic_ns() - 2_000_000_000

    offset = measure_offset(shard_clocks)
    assert offset.round_trip_ns < 2_000_000  # the rounds without the sleep won
    assert abs(offset.wall_ns - 5_000_000) <= offset.round_trip_ns / 2 + 50_000
    assert abs(offset.mono_ns + 2_000_000_000) <= offset.round_trip_ns / 2


@pytest.mark.parametrize("parquet", [False, True], ids=["csv", "parquet"])
def test_merge_moves_issue_times_scales_the_rate_and_names_the_shard(tmp_path, parquet):
    workload = builtin_workload("balanced")
    stats = RunStats(workload.classes)
    outputs = RunOutputs(tmp_path / ("merged.arrows" if parquet else "merged.csv"),
                         tmp_path / "merged.json", tmp_path,
                         tmp_path / "merged.parquet" if parquet else None)
    merge = ShardMerge(outputs, stats, workload.classes, shard_count=4)
    # Two shard rows as the Recorder writes them, one with a model name that needs quoting.
    data = ("1,0,1,urgent,resnet50,2000000,2.000,True,OK,True,100000001,10,5000,7,all,75,0\r\n"
            '2,1,3,relaxed,"vit,big",-1,-0.000,False,NOT_SENT,False,2000000002,-1,6000,8,all,,1'
            "\r\n").encode()
    assert merge.add(3, data, mono_offset_ns=1000) == 2
    merge.close()
    if not parquet:
        rows = list(csv.reader(io.StringIO(outputs.records.read_text())))
        assert tuple(rows[0]) == MERGED_COLUMNS
        assert rows[1][12] == "4000" and rows[1][15] == "300" and rows[1][-1] == "3"
        assert rows[2][4] == "vit,big" and rows[2][12] == "5000" and rows[2][15] == ""
    columns = read_columns(outputs.records, MERGED_COLUMNS)
    assert columns["issue_mono_ns"].tolist() == [4000, 5000]
    assert columns["target_qps_at_issue"][0] == 300 and np.isnan(columns["target_qps_at_issue"][1])
    assert columns["model"].tolist() == ["resnet50", "vit,big"]
    assert columns["shard"].tolist() == [3, 3]
    assert columns["slo_met"].tolist() == [True, False]
    overall = stats.overall()
    assert (overall.count, overall.met, overall.errors) == (2, 1, 1)
    assert overall.issue_span_s == pytest.approx(1000 / 1e9)


def run_cli(*code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "\n".join(code)], capture_output=True,
                          text=True, timeout=60)


def test_ray_missing_is_one_line_and_exit_2(tmp_path):
    proc = run_cli("import sys",
                   "sys.modules['ray'] = None  # as if not installed",
                   "from fastload.commands.run import main",
                   f"sys.exit(main(['--ray', 'auto', '--metrics-csv', '{tmp_path}/m.csv']))")
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("fastload: error: --ray needs Ray, which is not installed: "
                                   "pip install 'fastload[ray]'")
    assert not (tmp_path / "m.csv").exists()


def test_a_run_without_ray_never_imports_it():
    proc = run_cli("import sys",
                   "from fastload.commands.run import parse_config",
                   "import fastload.run.local, fastload.run.shards, fastload.run.shards.partition",
                   "parse_config(['--total-qps', '10'])",
                   "assert 'ray' not in sys.modules, 'ray was imported'")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("args, message", [
    (["--shards", "2"], "--shards needs --ray"),
    (["--ray", "auto", "--shards", "0"], "--shards must be in [1, 1024], got 0"),
])
def test_bad_shard_flags(args, message):
    with pytest.raises(UsageError) as raised:
        parse_config(args)
    assert str(raised.value) == message


def test_schedule_scales_every_phase():
    config = parse_config(["--qps-schedule", "1s@100..300,2s@50"])
    half = config.schedule.scaled(0.5)
    assert [(p.duration_ms, p.qps, p.to_qps) for p in half.phases] == [(1000, 50, 150),
                                                                       (2000, 25, 25)]
    assert half.expected_arrivals == pytest.approx(config.schedule.expected_arrivals / 2)
    assert math.isclose(half.peak_qps, 150)
