"""The load certificate: judged against Poisson count noise and the lag limits on synthetic
records, and on real runs, where a starved client is called client-limited and an overloaded
server is not."""
from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from fastload.arrivals.pipe import IssuedSample
from fastload.commands.run import parse_config
from fastload.contract.load import LoadLimits, ProcessLoad
from fastload.contract.percentiles import Spread, nearest_rank
from fastload.records.row import Record
from fastload.results.certificate import AS_PLANNED, CLIENT_LIMITED, NOT_JUDGED, certify
from fastload.results.stats import RunStats

from test_generator import read_rows, run_fastload

START_NS = 1_000_000_000_000
SMALL = ('[models.resnet50]\nshape = [1, 16]\n'
         '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 0.5\nmodels = { resnet50 = 1.0 }\n'
         '[[classes]]\ntier = 3\nslo = "relaxed"\nfraction = 0.5\nmodels = { resnet50 = 1.0 }\n')


def stats_of(config, gaps_ms: list[float], send_lag_ms: float = 0.1) -> RunStats:
    """Statistics of samples issued at these gaps (alternating classes), each sent after
    ``send_lag_ms`` and answered at once."""
    classes = config.workload.active_classes(config.total_qps)
    stats = RunStats(classes)
    issue_ns = START_NS
    records = []
    issuer = SimpleNamespace(plan=SimpleNamespace(label="all"))
    for i, gap_ms in enumerate(gaps_ms):
        issue_ns += int(gap_ms * 1e6)
        cls = classes[i % len(classes)]
        record = Record(IssuedSample(i, issuer, i, cls, cls.models[0][0], issue_ns, issue_ns,
                                     0, 0))
        record.send_mono_ns = issue_ns + int(send_lag_ms * 1e6)
        record.finish(issue_ns + 2_000_000, "OK", True)
        records.append(record)
    stats.add(records)
    return stats


def config_for(tmp_path: Path, *flags: str):
    (tmp_path / "small.toml").write_text(SMALL)
    return parse_config(["--workload-file", str(tmp_path / "small.toml"), *flags])


def sender(busy: float, lag_p99_ms: float = 0.5) -> ProcessLoad:
    return ProcessLoad("fastload", "sender", busy * 10, 10.0, Spread(0.2, lag_p99_ms, 2.0))


def test_a_short_slow_run_is_not_flagged_by_count_noise(tmp_path):
    config = config_for(tmp_path, "--total-qps", "10", "--duration-ms", "1000")
    # 7 gaps where 10 were planned over the span: 30 % short, but within Poisson noise.
    stats = stats_of(config, [100 * 10 / 7] * 8)
    certificate = certify(config, stats, START_NS, [sender(0.1)], [None], False)
    assert certificate.verdict == AS_PLANNED, certificate.reason
    overall = next(c for c in certificate.rate if c.row == "all")
    assert overall.issued == 7 and abs(overall.sigmas) < 4


def test_a_long_run_five_percent_short_is_client_limited(tmp_path):
    config = config_for(tmp_path, "--total-qps", "1000", "--duration-ms", "20000")
    # 20,000 issues at 95 % of the planned rate: -7 σ of Poisson noise overall.
    stats = stats_of(config, [1 / 0.95] * 20_000)
    certificate = certify(config, stats, START_NS, [sender(0.1)], [None], False)
    assert certificate.verdict == CLIENT_LIMITED
    assert "gaps between issues against" in certificate.reason and "σ" in certificate.reason
    overall = next(c for c in certificate.rate if c.row == "all")
    planned = 19_999 / 0.95  # 1,000 QPS over the span of 19,999 gaps at 950 QPS
    assert overall.sigmas == pytest.approx((19_999 - planned) / math.sqrt(planned), rel=0.01)


@pytest.mark.parametrize("change, reason", [
    (dict(send_lag_ms=12.0), "send lag p99 12.0 ms > 5 ms (5 % of the tightest SLO, 100 ms)"),
    (dict(busy=0.95), "fastload busy 95 % of a core > 90 %"),
    (dict(loop_lag_ms=7.5), "fastload event-loop lag p99 7.5 ms > 5 ms"),
])
def test_the_first_limit_crossed_is_the_reason(tmp_path, change, reason):
    config = config_for(tmp_path, "--total-qps", "100", "--duration-ms", "5000")
    stats = stats_of(config, [10.0] * 500, change.get("send_lag_ms", 0.1))
    load = sender(change.get("busy", 0.2), change.get("loop_lag_ms", 0.5))
    arrivals = ProcessLoad("arrivals all", "arrivals", 9.9, 10.0)  # never judged by its CPU
    certificate = certify(config, stats, START_NS, [load, arrivals], [None], False)
    assert certificate.verdict == CLIENT_LIMITED
    assert certificate.reason.startswith(reason)


def test_limits_follow_the_tightest_slo_or_the_flag_values(tmp_path):
    config = config_for(tmp_path, "--total-qps", "100", "--duration-ms", "5000")
    stats = stats_of(config, [10.0] * 500, send_lag_ms=12.0)
    loose = replace(config, load_limits=LoadLimits(lag_ms=20.0))
    assert certify(loose, stats, START_NS, [sender(0.2)], [None], False).verdict == AS_PLANNED
    assert LoadLimits().lag_limit_ms(config.workload) == pytest.approx(5.0)


def test_a_timer_plan_is_exact_and_an_interrupted_run_is_not_judged(tmp_path):
    config = config_for(tmp_path, "--total-qps", "100", "--duration-ms", "5000")
    stats = stats_of(config, [10.0] * 500)
    assert certify(config, stats, START_NS, [], [np.zeros(500)], False).verdict == AS_PLANNED
    short = certify(config, stats, START_NS, [], [np.zeros(501)], False)
    assert short.verdict == CLIENT_LIMITED
    assert short.reason == "issued 500 of the 501 arrivals planned"
    assert certify(config, stats, START_NS, [], [np.zeros(501)], True).verdict == NOT_JUDGED


def load_of(csv_path: Path) -> dict:
    return json.loads(csv_path.with_suffix(".json").read_text())["load"]


@pytest.mark.parametrize("processes", [1, 2])
def test_a_modest_run_is_certified_from_what_it_recorded(tmp_path, processes):
    (tmp_path / "small.toml").write_text(SMALL)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--workload-file", "small.toml",
                                  "--total-qps", "100", "--duration-ms", "3000",
                                  "--processes", str(processes))
    assert proc.returncode == 0, proc.stderr
    load = load_of(csv_path)
    assert load["verdict"] == AS_PLANNED, load["reason"]
    assert "load: as planned (" in proc.stdout
    rows = read_rows(csv_path)
    # The certificate's figures are the rows' own.
    lags_ns = sorted(int(r["send_lag_ns"]) for r in rows)
    p99_ms = lags_ns[nearest_rank(len(lags_ns), 99) - 1] / 1e6
    assert load["send_lag"]["p99_ms"] == pytest.approx(p99_ms, rel=0.01, abs=0.002)
    assert load["send_lag"]["max_ms"] == pytest.approx(lags_ns[-1] / 1e6, rel=0.01, abs=0.002)
    overall = next(c for c in load["rate"] if c["row"] == "all")
    assert overall["issued"] == len(rows) - 1 and abs(overall["sigmas"]) < 4
    senders = [p for p in load["processes"] if p["role"] == "sender"]
    assert len(senders) == processes
    assert all(0 < p["busy"] < load["cores"] and p["loop_lag"]["p99_ms"] > 0 for p in senders)
    assert [p["name"] for p in load["processes"] if p["role"] == "arrivals"] == ["arrivals all"]
    assert load["issue_lateness"] is None  # LoadGen keeps its schedule to itself


def test_a_timer_run_measures_issue_lateness_against_its_plan(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--workload-file", "small.toml",
                                  "--total-qps", "100", "--duration-ms", "2000",
                                  "--burstiness", "0.5", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    load = load_of(csv_path)
    [exact] = load["rate"]
    assert exact["sigmas"] is None
    assert exact["issued"] == exact["planned"] == len(read_rows(csv_path))
    assert 0 < load["issue_lateness"]["p50_ms"] <= load["issue_lateness"]["max_ms"]


def test_an_overloaded_server_leaves_the_certificate_clean(tmp_path):
    """What users come to measure: one simulated GPU at twice its capacity. Latencies go far
    past the SLOs; the client's own figures stay small."""
    (tmp_path / "small.toml").write_text(SMALL)
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--embedded-gpus", "1",
                                  "--embedded-policy", "fifo", "--workload-file", "small.toml",
                                  "--total-qps", "400", "--duration-ms", "4000")
    assert proc.returncode in (0, 1), proc.stderr
    summary = json.loads(csv_path.with_suffix(".json").read_text())
    assert summary["overall"]["slo_attainment_pct"] < 60  # the server is overloaded
    assert summary["load"]["verdict"] == AS_PLANNED, summary["load"]["reason"]


def test_a_starved_client_is_client_limited(tmp_path):
    """A rate no one sender process carries: 5,000 QPS of 602 KB requests."""
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--embedded-gpus", "64",
                                  "--total-qps", "5000", "--duration-ms", "3000")
    assert proc.returncode in (0, 1), proc.stderr
    load = load_of(csv_path)
    assert load["verdict"] == CLIENT_LIMITED and load["reason"]
    assert "load: CLIENT-LIMITED: " + load["reason"] in proc.stdout
    assert np.isfinite(load["send_lag"]["p99_ms"])
