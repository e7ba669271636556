"""Rate schedules: parsing, and the Λ / Λ⁻¹ arithmetic the thinning and gamma timer rely on."""
from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fastload.contract.rates import (
    Phase,
    RateSchedule,
    ScheduleError,
    parse_schedule,
    phases_from_table,
)


def test_experiment_5_spike():
    schedule = parse_schedule("20s@200,5s@800,20s@200")
    assert schedule.phases == (Phase(20000, 200, 200), Phase(5000, 800, 800),
                               Phase(20000, 200, 200))
    assert schedule.duration_ms == 45000 and schedule.peak_qps == 800
    assert schedule.arrivals_by(45) == pytest.approx(20 * 200 + 5 * 800 + 20 * 200)
    assert schedule.expected_arrivals == pytest.approx(12000)
    assert schedule.mean_qps == pytest.approx(12000 / 45)
    assert [schedule.phase_index(t) for t in (0, 19.999, 20, 24.9, 25, 44.9)] == [0, 0, 1, 1, 2, 2]
    assert schedule.rate_at(22) == 800 and schedule.rate_at(45) == 0 and schedule.rate_at(-1) == 0


def test_units_and_ramps():
    schedule = parse_schedule("500ms@10, 1m@100..300 ,2s@0..50")
    assert [p.duration_ms for p in schedule.phases] == [500, 60000, 2000]
    assert schedule.phases[1] == Phase(60000, 100, 300)
    assert schedule.rate_at(0.5 + 30) == pytest.approx(200)
    assert schedule.arrivals_by(60.5) == pytest.approx(5 + 60 * 200)


@given(st.lists(st.tuples(st.integers(1, 10_000), st.floats(0, 1000), st.floats(0, 1000))
                .filter(lambda p: max(p[1], p[2]) > 0.01), min_size=1, max_size=5),
       st.floats(0, 1))
def test_time_of_inverts_arrivals_by(phases, fraction):
    schedule = RateSchedule(tuple(Phase(d, a, b) for d, a, b in phases))
    total = schedule.expected_arrivals
    arrivals = fraction * total
    t_s = schedule.time_of(arrivals)
    assert 0 <= t_s <= schedule.duration_ms / 1000 + 1e-9
    assert schedule.arrivals_by(t_s) == pytest.approx(arrivals, rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("spec, message", [
    ("20@200", "phase 1 '20@200' is not DURATION@QPS"),
    ("20s@200,5h@800", "phase 2 '5h@800'"),
    ("0s@100", "phase 1 must last > 0 ms"),
    ("5s@0", "not both 0"),
    ("5s@-3", "needs rates >= 0"),
    ("5s@abc", "is not DURATION@QPS"),
    ("", "phase 1 '' is not"),
])
def test_bad_specs_name_the_phase(spec, message):
    with pytest.raises(ScheduleError, match=None) as error:
        parse_schedule(spec)
    assert message in str(error.value)


def test_workload_file_phases():
    schedule = phases_from_table([{"duration_ms": 1000, "qps": 10},
                                  {"duration_ms": 2000, "qps": 10, "to_qps": 30}], "w.toml")
    assert schedule.arrivals_by(3) == pytest.approx(10 + 2 * 20)
    with pytest.raises(ScheduleError, match=r"w.toml: phases\[0\].qps must be a number"):
        phases_from_table([{"duration_ms": 1000, "qps": "fast"}], "w.toml")
    with pytest.raises(ScheduleError, match=r"phases\[1\]: phase 2 must last > 0 ms"):
        phases_from_table([{"duration_ms": 1, "qps": 1}, {"duration_ms": 0, "qps": 1}], "w.toml")
    assert math.isinf(schedule.time_of(1e9))
