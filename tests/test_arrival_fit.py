"""The goodness of fit of issue gaps to their planned law: right laws pass, wrong ones fail, in
any completion order, in bounded memory; and a real run reports it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fastload.arrivals.timer import gamma_offsets_s
from fastload.contract.rates import RateSchedule, parse_schedule
from fastload.results.arrival_fit import RESOLUTION_S, GapFit, chi_square_p, regularized_gamma

from test_generator import run_fastload

START_NS = 5_000_000_000
HORIZON_S = 6.0


def test_the_gamma_and_chi_square_laws_match_their_closed_forms():
    z = np.array([0.0, 1e-6, 0.3, 1.0, 4.0, 15.0, 80.0])
    assert regularized_gamma(1.0, z) == pytest.approx(1 - np.exp(-z), abs=1e-13)
    assert regularized_gamma(3.0, z) == pytest.approx(1 - np.exp(-z) * (1 + z + z * z / 2),
                                                      abs=1e-13)
    for x in (0.5, 3.0, 20.0):  # two degrees of freedom: p = exp(-x/2)
        assert chi_square_p(x, 2) == pytest.approx(np.exp(-x / 2), rel=1e-9)


def fit_of(offsets_s: np.ndarray, schedule: RateSchedule, shape: float = 1.0,
           shuffle_within_s: float = 0.0, batch: int = 1000) -> GapFit:
    """A fit fed these arrivals in batches, each batch's order shuffled as completions are, and
    batches late by up to ``shuffle_within_s`` of issue time."""
    rng = np.random.default_rng(7)
    times = START_NS + np.round(np.asarray(offsets_s) * 1e9).astype(np.int64)
    # Completion order: issue time plus a latency of up to shuffle_within_s.
    times = times[np.argsort(times + rng.uniform(0, shuffle_within_s * 1e9, len(times)))]
    fit = GapFit(schedule, shape, START_NS, HORIZON_S)
    for start in range(0, len(times), batch):
        fit.add(times[start:start + batch])
    return fit


def poisson_offsets(qps: float, count: int, seed: int = 1) -> np.ndarray:
    return np.cumsum(np.random.default_rng(seed).exponential(1 / qps, count))


def test_poisson_arrivals_fit_the_exponential_law_in_any_completion_order():
    offsets = poisson_offsets(500, 40_000)
    schedule = RateSchedule.constant(500, 60_000)
    in_order = fit_of(offsets, schedule).result()
    shuffled = fit_of(offsets, schedule, shuffle_within_s=5.0).result()
    assert in_order == shuffled  # every gap found its place: the same bins
    assert in_order.p_value > 1e-3 and in_order.law == "exponential"
    gaps = np.diff(offsets)
    assert in_order.gaps == np.count_nonzero(gaps > RESOLUTION_S)
    assert in_order.short_gaps == len(gaps) - in_order.gaps


def test_gaps_of_the_right_mean_but_the_wrong_law_fail():
    """Uniform gaps (CV 0.58) at the planned rate: the count check cannot see it, the fit can."""
    offsets = np.cumsum(np.random.default_rng(2).uniform(0, 2 / 500, 20_000))
    assert fit_of(offsets, RateSchedule.constant(500, 60_000)).result().p_value < 1e-6


def test_a_schedule_is_judged_by_its_own_rate():
    schedule = parse_schedule("10s@100,10s@100..800,10s@800")
    unit = np.cumsum(np.random.default_rng(3).exponential(1.0, 20_000))
    offsets = np.array([schedule.time_of(a) for a in unit if a < schedule.expected_arrivals])
    assert fit_of(offsets, schedule).result().p_value > 1e-3
    mean = RateSchedule.constant(schedule.mean_qps, schedule.duration_ms)
    assert fit_of(offsets, mean).result().p_value < 1e-6


def test_the_timers_gamma_arrivals_fit_their_shape_and_not_poisson():
    schedule = RateSchedule.constant(300, 60_000)
    offsets = gamma_offsets_s(schedule, 0.5, seed=4)
    gamma = fit_of(offsets, schedule, shape=0.5).result()
    assert gamma.law == "gamma, shape 0.5" and gamma.p_value > 1e-3
    assert fit_of(offsets, schedule).result().p_value < 1e-6


def test_memory_is_bounded_by_the_horizon_not_the_run():
    offsets = poisson_offsets(1000, 200_000)  # 200 s
    fit = GapFit(RateSchedule.constant(1000, 200_000), 1.0, START_NS, HORIZON_S)
    times = START_NS + np.round(offsets * 1e9).astype(np.int64)
    most = 0
    for start in range(0, len(times), 500):
        fit.add(times[start:start + 500])
        most = max(most, fit.waiting)
    assert most < 1000 * HORIZON_S * 1.5 + 8192
    result = fit.result()
    assert result.gaps + result.short_gaps == len(times) - 1


def test_too_few_gaps_give_no_p_value():
    result = fit_of(poisson_offsets(50, 100), RateSchedule.constant(50, 10_000)).result()
    assert result.p_value is None and result.gaps < 250


@pytest.mark.parametrize("shape", ["poisson", "trace"])
def test_a_run_reports_the_fit_of_its_issue_gaps(tmp_path, shape):
    (tmp_path / "small.toml").write_text(
        '[models.resnet50]\nshape = [1, 16]\n'
        '[[classes]]\ntier = 1\nslo = "urgent"\nfraction = 1.0\nmodels = { resnet50 = 1.0 }\n')
    flags = (["--total-qps", "200", "--duration-ms", "3000"] if shape == "poisson" else
             ["--arrival-trace", str(tmp_path / "t.csv")])
    (tmp_path / "t.csv").write_text("timestamp\n" + "".join(f"{10 * i}\n" for i in range(300)))
    proc, csv_path = run_fastload(tmp_path, "--embedded", "--workload-file", "small.toml",
                                  *flags)
    assert proc.returncode == 0, proc.stderr
    fit = json.loads(csv_path.with_suffix(".json").read_text())["load"]["issue_fit"]
    if shape == "trace":
        assert fit is None  # a replayed trace has no law
        return
    assert fit["law"] == "exponential" and fit["gaps"] + fit["short_gaps"] > 500
    assert 0 <= fit["p_value"] <= 1 and fit["resolution_ms"] == RESOLUTION_S * 1e3
    assert f"issue gaps fit exponential p={fit['p_value']:.2g}" in proc.stdout


@pytest.mark.parametrize("shape", [0.1, 0.5, 1.0, 4.0, 24.5, 100.0])
def test_the_gamma_law_and_chi_square_tail_match_scipy(shape):
    from scipy import special, stats
    z = np.geomspace(1e-6, 6 * shape + 40, 200)
    assert regularized_gamma(shape, z) == pytest.approx(special.gammainc(shape, z), abs=1e-12)
    for statistic in (10.0, 49.0, 80.0, 120.0):
        assert chi_square_p(statistic, 49) == pytest.approx(stats.chi2.sf(statistic, 49),
                                                            rel=1e-6, abs=1e-14)
