"""The load certificate: judged against Poisson count noise and the lag limits on synthetic
records, and on real runs, where a starved client is called client-limited and an overloaded
server is not."""
from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from statistics import NormalDist
from types import SimpleNamespace

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram

from fastload.arrivals.pipe import IssuedSample
from fastload.commands.run import parse_config
from fastload.contract.exits import EXIT_CLIENT_LIMITED
from fastload.contract.load import LoadLimits, ProcessLoad
from fastload.contract.noise import NOISE_SIGMAS, fewest_above, poisson_sigmas
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
    classes = len(config.workload.active_classes(config.total_qps))
    return stats_at(config, np.cumsum(gaps_ms), [i % classes for i in range(len(gaps_ms))],
                    send_lag_ms)


def stats_at(config, times_ms, class_indexes: list[int], send_lag_ms: float = 0.1) -> RunStats:
    """Statistics of samples issued at these times, of these classes."""
    classes = config.workload.active_classes(config.total_qps)
    stats = RunStats(classes)
    records = []
    issuer = SimpleNamespace(plan=SimpleNamespace(label="all"))
    for i, (time_ms, class_index) in enumerate(zip(times_ms, class_indexes)):
        issue_ns = START_NS + int(time_ms * 1e6)
        cls = classes[class_index]
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
    """A sender whose loop lag, sampled 100 times over 10 s, was ``lag_p99_ms`` at p99 and
    above."""
    return ProcessLoad("fastload", "sender", busy * 10, 10.0,
                       Spread(0.2, lag_p99_ms, max(lag_p99_ms, 2.0), 100, lag_p99_ms))


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
    (dict(send_lag_ms=12.0), "send lag p99 12.0 ms (at least 12.0 ms, from 500 samples) > 5 ms "
                             "(5 % of the tightest SLO, 100 ms)"),
    (dict(busy=0.95), "fastload busy 95 % of a core > 90 %"),
    (dict(loop_lag_ms=7.5), "fastload event-loop lag p99 7.5 ms (at least 7.5 ms, from 100 "
                            "samples) > 5 ms"),
])
def test_the_first_limit_crossed_is_the_reason(tmp_path, change, reason):
    config = config_for(tmp_path, "--total-qps", "100", "--duration-ms", "5000")
    stats = stats_of(config, [10.0] * 500, change.get("send_lag_ms", 0.1))
    load = sender(change.get("busy", 0.2), change.get("loop_lag_ms", 0.5))
    arrivals = ProcessLoad("arrivals all", "arrivals", 9.9, 10.0)  # never judged by its CPU
    certificate = certify(config, stats, START_NS, [load, arrivals], [None], False)
    assert certificate.verdict == CLIENT_LIMITED
    assert certificate.reason.startswith(reason)


@pytest.mark.parametrize("issued, planned", [(3, 0.2), (0, 3.0), (7, 10.0), (40, 20.0)])
def test_small_counts_are_judged_by_their_exact_poisson_tail(issued, planned):
    """Direct sums of the Poisson law against the tail poisson_sigmas turns into σ."""
    def pmf(j: int) -> float:
        return math.exp(-planned) * planned ** j / math.factorial(j)

    tail = (sum(pmf(j) for j in range(issued + 1)) if issued < planned
            else 1 - sum(pmf(j) for j in range(issued)))
    sigmas = poisson_sigmas(issued, planned)
    assert NormalDist().cdf(-abs(sigmas)) == pytest.approx(tail, rel=1e-9)
    assert math.copysign(1, sigmas) == math.copysign(1, issued - planned)


def test_large_counts_agree_with_the_normal_law():
    for issued in (950_000, 999_000, 1_001_000, 1_004_000):
        normal = (issued - 1e6) / 1e3
        assert poisson_sigmas(issued, 1e6) == pytest.approx(normal, abs=0.02)
    assert poisson_sigmas(1_000_000, 1e6) == 0.0 and poisson_sigmas(0, 0.0) == 0.0
    assert poisson_sigmas(1, 0.0) == math.inf


def test_three_arrivals_where_a_fifth_was_planned_are_not_client_limited(tmp_path):
    """A class at 5 QPS sent 3 gaps in 40 ms: +6.3 σ by the normal law, a 1-in-870 chance by
    the exact tail (seen in a 1 s test run)."""
    config = config_for(tmp_path, "--total-qps", "10", "--duration-ms", "1000")
    tier1 = [(500 + 40 / 3 * i, 0) for i in range(4)]
    tier3 = [(100.0 * i, 1) for i in range(1, 11)]
    times_ms, classes = zip(*sorted(tier1 + tier3))
    stats = stats_at(config, times_ms, list(classes))
    certificate = certify(config, stats, START_NS, [sender(0.1)], [None], False)
    assert certificate.verdict == AS_PLANNED, certificate.reason
    tier1 = next(c for c in certificate.rate if c.row == "tier1_urgent")
    assert tier1.issued == 3 and tier1.planned == pytest.approx(0.2)
    assert 2.5 < tier1.sigmas < 3.5


@pytest.mark.parametrize("n", [10, 30, 300, 1000])
def test_the_p99_floor_takes_as_many_samples_above_as_the_binomial_tail_allows(n):
    """Exact binomial tails (integers, no float sums) on both sides of the count chosen."""
    def tail(k: int) -> float:  # P(at least k of n above the p99)
        return float(Fraction(sum(math.comb(n, j) * 99 ** (n - j) for j in range(k, n + 1)),
                              100 ** n))

    k = fewest_above(n, 99)
    limit = 0.5 * math.erfc(NOISE_SIGMAS / math.sqrt(2))
    assert tail(k) <= limit < tail(k - 1)


def histogram_of(lags_ms: list[float]) -> HdrHistogram:
    histogram = HdrHistogram(1, 3_600_000_000, 3)
    for lag_ms in lags_ms:
        histogram.record_value(int(lag_ms * 1000))
    return histogram


def test_one_late_sample_of_thirty_is_not_a_late_p99(tmp_path):
    """A 3 s run's loop lag: 30 watchdog samples, one of them late by an OS time slice."""
    lag = Spread.of(histogram_of([0.3] * 29 + [6.5]))
    assert lag.p99_ms == pytest.approx(6.5, rel=0.01) and lag.count == 30
    assert lag.p99_floor_ms == pytest.approx(0.3, rel=0.01)
    config = config_for(tmp_path, "--total-qps", "100", "--duration-ms", "3000")
    stats = stats_of(config, [10.0] * 300)
    load = ProcessLoad("fastload-sender-1", "sender", 1.0, 3.0, lag)
    assert certify(config, stats, START_NS, [load], [None], False).verdict == AS_PLANNED
    # Thirty late of 1,000 (3 %) is beyond sampling noise: the p99 is surely late.
    many = Spread.of(histogram_of([0.3] * 970 + [6.5] * 30))
    assert many.p99_floor_ms == pytest.approx(6.5, rel=0.01)
    late = certify(config, stats, START_NS, [replace(load, loop_lag=many)], [None], False)
    assert late.reason.startswith("fastload-sender-1 event-loop lag p99 6.5 ms (at least 6.5 ms, "
                                  "from 1,000 samples) > 5 ms")


def test_limits_follow_the_tightest_slo_or_the_flag_values(tmp_path):
    flags = ("--total-qps", "100", "--duration-ms", "5000")
    config = config_for(tmp_path, *flags)
    assert config.load_limits == LoadLimits(None, 0.9, 4.0)
    assert config.load_limits.lag_limit_ms(config.workload) == pytest.approx(5.0)
    stats = stats_of(config, [10.0] * 500, send_lag_ms=12.0)
    busy = sender(0.95)
    assert certify(config, stats, START_NS, [busy], [None], False).verdict == CLIENT_LIMITED
    loose = config_for(tmp_path, *flags, "--max-lag-ms", "20", "--max-sender-busy", "96")
    assert loose.load_limits == LoadLimits(20.0, 0.96, 4.0)
    certificate = certify(loose, stats, START_NS, [busy], [None], False)
    assert certificate.verdict == AS_PLANNED, certificate.reason
    # 7 gaps where 10 were planned (-0.95 σ) pass at 4 σ and fail at 0.5 σ.
    for sigmas, verdict in (("4", AS_PLANNED), ("0.5", CLIENT_LIMITED)):
        slow = config_for(tmp_path, "--total-qps", "10", "--duration-ms", "1000",
                          "--rate-sigmas", sigmas)
        short = stats_of(slow, [100 * 10 / 7] * 8)
        assert certify(slow, short, START_NS, [sender(0.1)], [None], False).verdict == verdict


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
    assert "load: as planned (" in proc.stdout and "CLIENT BEHIND" not in proc.stderr
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
    """A rate no one sender process carries: 5,000 QPS of 602 KB requests. Exit 8 outranks a
    --fail-if that held (6)."""
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--embedded-gpus", "64",
                                  "--total-qps", "5000", "--duration-ms", "3000",
                                  "--fail-if", "all.attainment<101")
    assert proc.returncode == EXIT_CLIENT_LIMITED, proc.stderr
    load = load_of(csv_path)
    assert load["verdict"] == CLIENT_LIMITED and load["reason"]
    assert "load: CLIENT-LIMITED: " + load["reason"] in proc.stdout
    # The status line said so while it ran (here its last line: the run is shorter than the
    # 5 s between lines in a log).
    assert re.search(r"SLO met [\d.]+ %  CLIENT BEHIND: send lag p99 [\d.]+ ms > 5 ms\n",
                     proc.stderr), proc.stderr
    [message] = proc.stderr.strip().splitlines()[-1:]
    assert message.startswith(f"fastload: error: client-limited: {load['reason']}. This machine")
    assert "--ray" in message and "--max-lag-ms" in message
    # Every output is written before the exit.
    assert len(read_rows(csv_path)) > 1000
    assert np.isfinite(load["send_lag"]["p99_ms"])
