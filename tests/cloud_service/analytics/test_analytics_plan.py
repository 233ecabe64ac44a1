"""Plan adherence: counters, attainment, projection, mix drift, demand against plan."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cloud_service.analytics.kernels import plan as kp
from cloud_service.analytics.plan import HOUR_MS, PlanPeriod, adherence, demand_vs_plan, mix_drift

T0 = 1_767_225_600_000


def test_counter_increments_survive_a_reset() -> None:
    inc = kp.counter_increments(np.array([10.0, 15.0, 20.0, 3.0, 8.0, np.nan, 9.0]))
    assert inc.tolist() == [0.0, 5.0, 5.0, 3.0, 5.0, 0.0, 1.0]


def test_attainment_and_projection_for_a_shift() -> None:
    # 8-hour shift planned at 800; the line made 100/h for 4 hours, then stopped for 1 hour
    ts = T0 + np.arange(0, 5 * 60 + 1, 10, dtype=np.int64) * 60_000
    minutes = (ts - T0) / 60_000
    counter = 1000.0 + np.minimum(minutes, 240) * (100 / 60)
    period = PlanPeriod(T0, T0 + 8 * HOUR_MS, 800.0)
    now = T0 + 5 * HOUR_MS
    a = adherence(ts, counter, period, now)
    assert a.produced == pytest.approx(400.0)
    assert a.planned_so_far == pytest.approx(500.0)
    assert a.attainment == pytest.approx(0.8)
    assert a.run_rate_per_hour == pytest.approx(50.0)  # last 2 h: one running, one stopped
    assert a.projected_attainment == pytest.approx((400 + 50 * 3) / 800)
    assert a.required_rate_per_hour == pytest.approx(400 / 3)


def test_plan_period_checks() -> None:
    with pytest.raises(ValueError, match="end after"):
        PlanPeriod(T0, T0, 10.0)
    assert math.isnan(
        adherence(np.array([T0]), np.array([1.0]), PlanPeriod(T0, T0 + HOUR_MS, 5.0), T0).attainment
    )


mix = arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 1e6))


@settings(max_examples=60, deadline=None)
@given(mix, mix)
def test_mix_drift_bounds(actual: np.ndarray, planned: np.ndarray) -> None:
    n = min(actual.size, planned.size)
    d = mix_drift(actual[:n], planned[:n])
    if actual[:n].sum() > 0 and planned[:n].sum() > 0:
        assert -1e-12 <= d <= 1 + 1e-12
        assert mix_drift(planned[:n] * 3.0, planned[:n]) == pytest.approx(0.0, abs=1e-12)
    else:
        assert math.isnan(d)


def test_mix_drift_values_and_checks() -> None:
    assert mix_drift([50, 50], [100, 0]) == pytest.approx(0.5)
    assert mix_drift([0, 10], [10, 0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="aligned"):
        mix_drift([1, 2], [1])


def test_demand_surge_eats_the_buffer() -> None:
    d = demand_vs_plan(actual_so_far=1300, planned_so_far=1000, safety_stock=200)
    assert d.excess == 300
    assert d.ratio == pytest.approx(1.3)
    assert d.buffer_used == pytest.approx(1.5)
    assert demand_vs_plan(900, 1000, 200).buffer_used == 0.0
