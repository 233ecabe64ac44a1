"""Demand: each pattern lands in its Syntetos-Boylan class; plan factors and surges do what
they say, and a surge changes nothing outside its window."""

from __future__ import annotations

import numpy as np
import pytest
from sim_scenarios import DAY_MS, HOUR_MS, MONDAY

from firmware_sim.core.demand import DemandProcess, Surge
from firmware_sim.core.streams import stream
from firmware_sim.scenario.model import PATTERN_PRESETS, DemandPattern, DemandSpec, Promotion

ADI_CUT, CV2_CUT = 1.32, 0.49


def spec(pattern: DemandPattern, **kw: object) -> DemandSpec:
    orders, cv2 = PATTERN_PRESETS[pattern]
    base: dict[str, object] = {
        "pattern": pattern,
        "mean_per_day": 40.0,
        "orders_per_day": orders,
        "size_cv2": cv2,
        "weekly": (1.0,) * 7,
        "trend_per_week": 0.0,
        "promotions": (),
        "open_hours": (0.0, 24.0),
    }
    base.update(kw)
    return DemandSpec(**base)  # type: ignore[arg-type]


def process(s: DemandSpec, seed: int = 1) -> DemandProcess:
    return DemandProcess(s, stream(seed, "d"), stream(seed, "s"), start_ms=MONDAY)


def daily(p: DemandProcess, days: int) -> np.ndarray:
    return np.array([sum(q for _, q in p.orders_for_day(MONDAY + d * DAY_MS)) for d in range(days)])


@pytest.mark.parametrize("pattern", list(DemandPattern))
def test_each_pattern_is_in_its_class(pattern: DemandPattern) -> None:
    totals = daily(process(spec(pattern)), 1500)
    nonzero = totals[totals > 0]
    adi = len(totals) / len(nonzero)
    cv2 = float(nonzero.var() / nonzero.mean() ** 2)
    intermittent = pattern in {DemandPattern.INTERMITTENT, DemandPattern.LUMPY}
    variable = pattern in {DemandPattern.ERRATIC, DemandPattern.LUMPY}
    assert (adi > ADI_CUT) is intermittent, adi
    assert (cv2 > CV2_CUT) is variable, cv2
    assert totals.mean() == pytest.approx(40.0, rel=0.1)


def test_orders_are_sorted_whole_pieces_inside_open_hours() -> None:
    p = process(spec(DemandPattern.ERRATIC, open_hours=(6.0, 20.0)))
    for d in range(20):
        day = MONDAY + d * DAY_MS
        orders = p.orders_for_day(day)
        assert orders == sorted(orders)
        for t, q in orders:
            assert day + 6 * HOUR_MS <= t < day + 20 * HOUR_MS
            assert isinstance(q, int)
            assert q >= 1


def test_weekly_trend_and_promotions_shape_the_expectation() -> None:
    weekly = (1.4, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6)
    p = process(
        spec(
            DemandPattern.SMOOTH,
            weekly=weekly,
            trend_per_week=0.1,
            promotions=(Promotion(start_day=7, days=2, uplift=2.0),),
        )
    )
    assert p.expected(MONDAY) == pytest.approx(56.0)
    assert p.expected(MONDAY + 6 * DAY_MS) == pytest.approx(40 * 0.6 * (1 + 0.6 / 7))
    assert p.expected(MONDAY + 7 * DAY_MS) == pytest.approx(40 * 1.4 * 1.1 * 2.0)
    assert p.expected(MONDAY + 9 * DAY_MS) == pytest.approx(40 * 1.0 * (1 + 0.9 / 7))
    totals = daily(process(spec(DemandPattern.SMOOTH, weekly=weekly)), 700)
    mondays, sundays = totals[0::7].mean(), totals[6::7].mean()
    assert mondays / sundays == pytest.approx(1.4 / 0.6, rel=0.1)


def test_a_surge_multiplies_demand_in_its_window_only() -> None:
    start, end = MONDAY + 2 * DAY_MS + 6 * HOUR_MS, MONDAY + 3 * DAY_MS + 18 * HOUR_MS
    plain, surged = process(spec(DemandPattern.SMOOTH)), process(spec(DemandPattern.SMOOTH))
    surged.add_surge(Surge(start, end, 4.0))
    inside_plain = inside_surged = 0
    for d in range(6):
        a, b = plain.orders_for_day(MONDAY + d * DAY_MS), surged.orders_for_day(MONDAY + d * DAY_MS)
        assert [o for o in a if not start <= o[0] < end] == [
            o for o in b if not start <= o[0] < end
        ]
        inside_plain += sum(q for t, q in a if start <= t < end)
        inside_surged += sum(q for t, q in b if start <= t < end)
    assert inside_surged / inside_plain == pytest.approx(4.0, rel=0.25)
    assert plain.expected(MONDAY + 2 * DAY_MS) == surged.expected(MONDAY + 2 * DAY_MS)  # unplanned


def test_same_seed_same_orders_and_none_before_the_start() -> None:
    later = MONDAY + 15 * HOUR_MS
    a = DemandProcess(spec(DemandPattern.LUMPY), stream(4, "d"), stream(4, "s"), start_ms=later)
    b = DemandProcess(spec(DemandPattern.LUMPY), stream(4, "d"), stream(4, "s"), start_ms=later)
    days_a = [a.orders_for_day(MONDAY + d * DAY_MS) for d in range(30)]
    assert days_a == [b.orders_for_day(MONDAY + d * DAY_MS) for d in range(30)]
    assert all(t >= later for t, _ in days_a[0])
    c = DemandProcess(spec(DemandPattern.LUMPY), stream(5, "d"), stream(5, "s"), start_ms=later)
    assert days_a != [c.orders_for_day(MONDAY + d * DAY_MS) for d in range(30)]
