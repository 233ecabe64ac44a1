"""Depletion: consumption net of receipts and noise, stockout quantiles, reorder advice."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.analytics.codes import DemandClass
from cloud_service.analytics.depletion import (
    HOUR_MS,
    PlannedOutput,
    Production,
    Receipt,
    analyze,
    counter_increments,
    to_grid,
)
from cloud_service.analytics.kernels import depletion as kd

T0 = 1_767_225_600_000  # 2026-01-01T00:00Z


def _hours(n: int) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * HOUR_MS


def test_consumption_recovered_net_of_receipts_and_noise() -> None:
    rng = np.random.default_rng(1)
    use = rng.poisson(3.0, 720).astype(np.float64)
    level = 2000.0 - np.cumsum(use)
    level[300:] += 1500.0  # a receipt
    noisy = level + rng.normal(0, 0.4, level.size)
    cons, rec, noise = kd.recover_consumption(noisy)
    assert rec[299] == pytest.approx(1500.0, abs=15.0)
    assert (rec[np.arange(rec.size) != 299] == 0).all()
    assert cons.sum() == pytest.approx(use[1:].sum(), rel=0.02)
    assert (cons >= 0).all()
    assert noise == pytest.approx(0.4 * np.sqrt(2), rel=0.3)


def test_deterministic_stockout_and_reorder() -> None:
    level = 300.0 - 2.0 * np.arange(101)  # 2 units an hour, no noise; 100 left at the end
    res = analyze(_hours(101), level, lead_time_h=10, safety_stock=20)
    assert res.rate_per_hour == pytest.approx(2.0)
    assert res.demand_class == DemandClass.SMOOTH
    end = res.as_of_ms
    assert res.stockout_ms == (end + 50 * HOUR_MS,) * 3  # no variance: all quantiles agree
    assert res.safety_ms[1] == end + 40 * HOUR_MS
    assert res.reorder_by_ms == end + 30 * HOUR_MS  # safety crossing minus lead time
    # order-up-to: demand over lead + review (10 + 24 h) plus safety, minus position then
    assert res.reorder_qty == pytest.approx(2.0 * 34 + 20 - (100 - 2.0 * 30))


def test_scheduled_receipt_postpones_the_stockout() -> None:
    level = 300.0 - 2.0 * np.arange(101)
    base = analyze(_hours(101), level, lead_time_h=10)
    later = analyze(
        _hours(101),
        level,
        lead_time_h=10,
        receipts=[Receipt(ts_ms=base.as_of_ms + 20 * HOUR_MS, qty=100.0)],
    )
    assert later.stockout_ms[1] == base.stockout_ms[1] + 50 * HOUR_MS  # type: ignore[operator]


def test_quantiles_are_ordered_and_beyond_horizon_is_empty() -> None:
    rng = np.random.default_rng(3)
    use = rng.gamma(2.0, 2.0, 24 * 60) * (rng.random(24 * 60) < 0.3)
    level = 3000.0 - np.cumsum(use)
    res = analyze(_hours(level.size), level, lead_time_h=48, safety_stock=100)
    p10, p50, p90 = res.stockout_ms
    assert p10 is not None
    assert p50 is not None
    assert p90 is not None
    assert p10 <= p50 <= p90
    assert res.safety_ms[1] is not None
    assert res.safety_ms[1] <= p50
    short = analyze(_hours(level.size), level, lead_time_h=48, horizon_h=24)
    assert short.stockout_ms == (None, None, None)
    assert short.as_record()["stockout_p50"] == ""


def test_no_consumption_means_no_stockout_and_no_order() -> None:
    res = analyze(_hours(200), np.full(200, 80.0), lead_time_h=24, safety_stock=10)
    assert res.rate_per_hour == 0
    assert res.stockout_ms == (None, None, None)
    assert res.reorder_qty == 0
    assert res.reorder_by_ms is None


def test_input_checks() -> None:
    with pytest.raises(ValueError, match="service level"):
        analyze(_hours(10), np.ones(10), lead_time_h=1, service_level=1.0)
    with pytest.raises(ValueError, match="at least"):
        analyze(_hours(2), np.ones(2), lead_time_h=1)


@settings(max_examples=40, deadline=None)
# periods from 100 ms: 5,000 s of 1 ms periods would exceed to_grid's MAX_PERIODS (tested below)
@given(st.lists(st.integers(0, 5000), min_size=1, max_size=60), st.integers(100, 7200_000))
def test_to_grid_keeps_the_last_reading_of_each_period(offsets: list[int], period: int) -> None:
    ts = np.array(sorted(T0 + o * 1000 for o in offsets), dtype=np.int64)
    vals = np.arange(ts.size, dtype=np.float64)
    levels, end, _ = to_grid(ts, vals, period)
    assert levels.size == (ts[-1] // period) - (ts[0] // period) + 1
    assert end == (ts[-1] // period + 1) * period
    assert levels[-1] == vals[-1]
    assert np.isfinite(levels).all()
    assert (np.diff(levels) >= 0).all()  # values increase with time here, and so must the grid


def test_batch_kernel_equals_one_series_at_a_time() -> None:
    rng = np.random.default_rng(5)
    levels = 1000.0 - np.cumsum(rng.poisson(1.0, (6, 300)), axis=1).astype(np.float64)
    levels[2, 150:] += 400.0
    sched_t = np.zeros((6, 1))
    sched_q = np.zeros((6, 1))
    lead, review, safety = np.full(6, 12.0), np.full(6, 24.0), np.full(6, 30.0)
    many = kd.depletion_many(levels, sched_t, sched_q, lead, review, safety, 1.64, 500, 24)
    for i in range(6):
        one = kd.depletion_one(levels[i], sched_t[i], sched_q[i], 12.0, 24.0, 30.0, 1.64, 500, 24)
        np.testing.assert_array_equal(many[i], one)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 50.0), min_size=2, max_size=200), st.floats(100.0, 1e5))
def test_noiseless_consumption_is_conserved(use: list[float], start: float) -> None:
    level = start - np.concatenate([[0.0], np.cumsum(use[1:])])
    cons, rec, noise = kd.recover_consumption(level)
    assert (cons >= 0).all()
    assert (rec == 0).all()
    assert noise == 0.0
    assert cons.sum() == pytest.approx(sum(use[1:]), rel=1e-9, abs=1e-9)


def test_hours_from_now_for_alert_rules() -> None:
    level = 300.0 - 2.0 * np.arange(101)
    res = analyze(_hours(101), level, lead_time_h=10, safety_stock=20)
    h = res.hours_from(res.as_of_ms)
    assert h["stockout_p50_h"] == 50.0
    assert h["reorder_in_h"] == 30.0
    assert h["reorder_qty"] == res.reorder_qty


def _line_fed(days: int = 30, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A stock refilled only by a line: 60 pieces an hour from 06:00 to 14:00 on every day,
    about 20 pieces an hour consumed around the clock. Returns ``(ts, level, counter, true
    hourly rate)``; the counter is a 16-bit PLC counter that rolls over during the run."""
    rng = np.random.default_rng(seed)
    n = days * 24
    use = rng.poisson(20.0, n).astype(np.float64)
    made = np.where((np.arange(n) % 24 >= 6) & (np.arange(n) % 24 < 14), 60.0, 0.0)
    level = 2000.0 + np.cumsum(made - use)
    counter = (65_000.0 + np.cumsum(made)) % 65_536.0
    return _hours(n), level, counter, float(use[1:].mean())


def test_production_is_netted_into_consumption() -> None:
    ts, level, counter, true_rate = _line_fed()
    assert (np.diff(counter) < 0).any()  # the counter rolled over
    blind = analyze(ts, level, lead_time_h=24)
    netted = analyze(ts, level, lead_time_h=24, production=Production(ts, counter, counter_bits=16))
    # from level drops alone the line's hours hide the demand: far too low a rate
    assert blind.rate_per_hour < 0.8 * true_rate
    assert netted.rate_per_hour == pytest.approx(true_rate, rel=0.05)
    assert any("production netted in" in n for n in netted.notes)


def test_production_as_quantities_equals_the_counter() -> None:
    ts, level, counter, _ = _line_fed(days=20)
    made = counter_increments(counter, 16)
    a = analyze(ts, level, lead_time_h=24, production=Production(ts, counter, counter_bits=16))
    b = analyze(ts, level, lead_time_h=24, production=Production(ts, made, counter=False))
    assert a.rate_per_hour == b.rate_per_hour
    assert a.stockout_ms == b.stockout_ms


def test_planned_output_postpones_the_stockout() -> None:
    level = 300.0 - 2.0 * np.arange(101)  # 2 an hour, 100 left: zero in 50 h
    base = analyze(_hours(101), level, lead_time_h=10)
    end = base.as_of_ms
    assert base.stockout_ms[1] == end + 50 * HOUR_MS
    plan = [PlannedOutput(end + 5 * HOUR_MS, end + 15 * HOUR_MS, 20.0)]  # 2 an hour for 10 h
    later = analyze(_hours(101), level, lead_time_h=10, planned_output=plan)
    assert later.stockout_ms[1] == end + 60 * HOUR_MS
    past = [PlannedOutput(end - 20 * HOUR_MS, end, 500.0)]  # already in the stock
    assert analyze(_hours(101), level, lead_time_h=10, planned_output=past).stockout_ms == (
        base.stockout_ms
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 30_000), min_size=1, max_size=80),
    st.integers(0, 65_535),
    st.sampled_from([16, 32]),
)
def test_counter_increments_undo_rollover(steps: list[int], start: int, bits: int) -> None:
    counter = (start + np.concatenate([[0], np.cumsum(steps)])) % float(2**bits)
    inc = counter_increments(counter.astype(np.float64), bits)
    assert inc[0] == 0
    np.testing.assert_array_equal(inc[1:], np.asarray(steps, dtype=np.float64))


def test_counter_reset_counts_from_zero_and_gaps_are_skipped() -> None:
    values = np.array([100.0, 150.0, np.nan, 170.0, 5.0, 25.0])
    np.testing.assert_array_equal(counter_increments(values), [0, 50, 0, 20, 5, 20])
    # 16 bits: 65,530 -> 10 wraps (16 pieces); 20,000 -> 10 cannot (45,546 pieces, more
    # than half the range): a reset, 10 pieces; a leap of over half the range is a glitch
    np.testing.assert_array_equal(
        counter_increments(np.array([65_530.0, 10.0, 20_000.0, 10.0, 50_000.0]), 16),
        [0, 16, 19_990, 10, 0],
    )


def test_rate_uncertainty_of_a_daily_model_is_per_day_not_per_hour() -> None:
    # 100 a day in 24 equal hourly parts with a daily sd of 10: a month of stock runs out
    # after 30 days give or take about a day (sd of 30 days' demand: sqrt(30 100 + 30² 100
    # 0.1/1.9) = 88 pieces, under a day). Reading the daily level's variance per hour made
    # it 24 times too large and P10 four days early.
    rng = np.random.default_rng(11)
    daily = rng.normal(100.0, 10.0, 60)
    use = np.repeat(daily / 24.0, 24)
    level = 3000.0 + use.sum() - np.concatenate([[0.0], np.cumsum(use)])
    res = analyze(_hours(level.size), level, lead_time_h=24)
    p10, p50, p90 = ((x - res.as_of_ms) / HOUR_MS for x in res.stockout_ms)  # type: ignore[operator]
    assert p50 == pytest.approx(30 * 24, rel=0.05)
    assert p10 > 0.93 * p50
    assert p90 < 1.07 * p50


def test_batch_kernel_with_inflow_equals_one_series_at_a_time() -> None:
    rng = np.random.default_rng(6)
    use = rng.poisson(4.0, (4, 300)).astype(np.float64)
    made = np.where(np.arange(300) % 24 < 8, 12.0, 0.0) * np.ones((4, 1))
    levels = 1000.0 + np.cumsum(made - use, axis=1)
    inflow = np.ascontiguousarray(made[:, 1:])
    sched = np.zeros((4, 1))
    lead, review, safety = np.full(4, 12.0), np.full(4, 24.0), np.full(4, 30.0)
    many = kd.depletion_net_many(levels, inflow, sched, sched, lead, review, safety, 1.64, 500, 24)
    for i in range(4):
        one = kd.depletion_net_one(
            levels[i], inflow[i], sched[i], sched[i], 12.0, 24.0, 30.0, 1.64, 500, 24
        )
        np.testing.assert_array_equal(many[i], one)
    assert many[:, kd.F_RATE] == pytest.approx(use[:, 1:].mean(axis=1), rel=0.1)


# --- review fixes: reorder advice at the edges, grid size, stated assumptions -----------------


def test_no_demand_under_safety_stock_orders_now_up_to_safety_stock() -> None:
    # 5 in stock, safety stock 100, nothing used: no demand over lead time, but the stock
    # is 95 short of its buffer now (the kernel used to return early on a zero rate)
    res = analyze(_hours(200), np.full(200, 5.0), lead_time_h=72, safety_stock=100)
    assert res.rate_per_hour == 0
    assert res.safety_ms == (res.as_of_ms,) * 3
    assert res.reorder_by_ms is not None
    assert res.reorder_by_ms <= res.as_of_ms  # order now
    assert res.reorder_qty == 95
    assert any("order now" in n for n in res.notes)
    assert res.hours_from(res.as_of_ms)["reorder_in_h"] == -72.0
    out = kd.depletion_one(
        np.full(50, 5.0), np.empty(0), np.empty(0), 72.0, 24.0, 100.0, 1.64, 500, 24
    )
    assert out[kd.F_REORDER_QTY] == 95
    assert out[kd.F_REORDER_AT] == -72.0


def test_no_demand_at_safety_stock_needs_no_order() -> None:
    res = analyze(_hours(200), np.full(200, 100.0), lead_time_h=72, safety_stock=100)
    assert res.reorder_by_ms is None
    assert res.reorder_qty == 0


@pytest.mark.parametrize("horizon_h", [2160, 500, 200])
def test_no_order_date_is_invented_beyond_the_horizon(horizon_h: int) -> None:
    # a slow mover (about 1 a day from 1000): safety stock is months away, beyond every
    # horizon here; the latest order date was "as of + horizon - lead time" and moved with it
    rng = np.random.default_rng(2)
    use = (rng.random(24 * 30) < 0.04).astype(np.float64)
    level = 1000.0 - np.cumsum(use)
    res = analyze(_hours(level.size), level, lead_time_h=72, safety_stock=100, horizon_h=horizon_h)
    assert res.rate_per_hour > 0
    assert res.safety_ms == (None, None, None)
    assert res.reorder_by_ms is None
    assert res.reorder_qty == 0
    assert res.as_record()["reorder_by"] == ""
    assert res.hours_from(res.as_of_ms)["reorder_in_h"] is None  # what the live rules see
    assert not any("order now" in n for n in res.notes)


def test_a_wild_timestamp_is_a_clear_error_not_a_huge_grid() -> None:
    ts = np.concatenate([_hours(100), [T0 + 11 * 8760 * HOUR_MS]]).astype(np.int64)
    with pytest.raises(ValueError, match="span 96,361 periods of 60 min"):
        to_grid(ts, np.ones(ts.size), HOUR_MS)
    ts[-1] = 10**18  # would have asked numpy for 2 TiB
    with pytest.raises(ValueError, match="more than the 87,600 that can be analysed"):
        analyze(ts, np.ones(ts.size), lead_time_h=1)
    levels, _, _ = to_grid(_hours(87_600), np.ones(87_600), HOUR_MS)  # the limit itself is fine
    assert levels.size == 87_600


def test_negative_stock_is_stated() -> None:
    level = 50.0 - 2.0 * np.arange(101)
    res = analyze(_hours(101), level, lead_time_h=10, safety_stock=20)
    assert any("75 of 101 readings show a negative stock (lowest -150)" in n for n in res.notes)
    assert res.reorder_qty > 150 + 20  # the shortfall is made up too
    clean = analyze(_hours(101), level + 1000, lead_time_h=10)
    assert not any("negative" in n for n in clean.notes)


def test_hours_with_the_stock_empty_are_unmet_demand_not_zero_demand() -> None:
    # 1 a hour for 100 h, then empty for 200 h: those hours say nothing about demand. Read as
    # zero they gave a rate of 0.03 a hour and an "intermittent" class, and no note
    hours = np.arange(300)
    stock = np.maximum(100.0 - hours, 0.0)
    ts = (1_767_225_600_000 + hours * 3_600_000).astype(np.int64)
    r = analyze(ts, stock, lead_time_h=24)
    assert r.rate_per_hour == pytest.approx(1.0, rel=0.05)
    assert r.demand_class == DemandClass.SMOOTH
    assert any("stock empty and no consumption" in n for n in r.notes)
    # backorders (the level falling below zero) are consumption, and stay in
    owed = 100.0 - hours.astype(np.float64)
    r2 = analyze(ts, owed, lead_time_h=24)
    assert r2.rate_per_hour == pytest.approx(1.0, rel=0.05)
    assert not any("stock empty" in n for n in r2.notes)
    # the kernel keeps the observed periods, in order
    levels = np.array([5.0, 3.0, 0.0, 0.0, 0.0, 4.0, 2.0])
    cons = np.array([2.0, 3.0, 0.0, 0.0, -4.0, 2.0])
    assert kd.observed_demand(levels, cons, 0.0) == 4
    assert cons[:4].tolist() == [2.0, 3.0, -4.0, 2.0]
