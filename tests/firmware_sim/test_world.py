"""The world: the same seed gives the same data however it is stepped, and ground truth agrees
with the data (stockouts where true stock first hits zero, faults where the data shows them,
plan deviations that match the counts)."""

from __future__ import annotations

import random

import pytest
from sim_scenarios import DAY_MS, HOUR_MS, MONDAY, by_signal, collect, new_world, small_scenario

from firmware_sim.core.calendar import day_start
from firmware_sim.core.world import World
from firmware_sim.scenario import default_scenario
from firmware_sim.scenario.model import FaultKind
from shared.messages import Quality


def fault(kind: str, target: str, at_h: float, duration_h: float = 1.0, **params: float) -> str:
    extra = "".join(f"{k} = {v}\n" for k, v in params.items())
    duration = "" if kind == "counter_reset" else f"duration_h = {duration_h}\n"
    return f'\n[[faults]]\nkind = "{kind}"\ntarget = "{target}"\nat_h = {at_h}\n{duration}{extra}'


def test_same_seed_same_data_however_the_world_is_stepped() -> None:
    scenario = default_scenario()
    end = MONDAY + 4 * DAY_MS
    one, many = (
        World(scenario, seed=7, start_ms=MONDAY, sample_floor_s=30),
        World(scenario, seed=7, start_ms=MONDAY, sample_floor_s=30),
    )
    a, b = collect(one), collect(many)
    one.advance_to(end)
    rng = random.Random(1)
    t = MONDAY
    while t < end:
        t = min(end, t + rng.randint(1, 3 * HOUR_MS))
        many.advance_to(t)
        many.line("line3")  # observing must not change anything
    assert a == b
    assert one.truth.records == many.truth.records
    assert one.line("line3") == many.line("line3")
    other = World(scenario, seed=8, start_ms=MONDAY, sample_floor_s=30)
    c = collect(other)
    other.advance_to(end)
    assert [s.value for s in c] != [s.value for s in a]


def test_samples_lie_on_each_sensors_grid() -> None:
    w = new_world()
    samples = collect(w)
    w.advance_to(MONDAY + DAY_MS)
    for sig in w.scenario.signals:
        times = [s.ts for s in by_signal(samples, sig.id)]
        period = round(sig.period_s * 1000)
        assert times == list(range(MONDAY, MONDAY + DAY_MS + 1, period))
    floored = World(small_scenario(), seed=1, start_ms=MONDAY, sample_floor_s=600)
    assert floored.period_ms("p1.level") == 600_000
    assert floored.period_ms("b1.weight") == 600_000


def test_stockouts_are_exactly_where_true_stock_first_hits_zero() -> None:
    w = new_world(seed=2)
    end = MONDAY + 21 * DAY_MS
    previous = {key: p.stock for key, p in w.stock.items()}
    observed: list[tuple[str, str, int]] = []
    recovered: list[tuple[str, str, int]] = []
    while (t := w.queue.next_time()) is not None and t <= end:
        w.advance_to(t)
        for (wh, sku), point in w.stock.items():
            if previous[(wh, sku)] > 0 and point.stock == 0:
                observed.append((wh, sku, t))
            if previous[(wh, sku)] == 0 and point.stock > 0:
                recovered.append((wh, sku, t))
            previous[(wh, sku)] = point.stock
    recorded = [(r["warehouse"], r["sku"], r["ts_ms"]) for r in w.truth.of_type("stockout")]
    assert len(recorded) >= 3  # the test means something only if stockouts happen
    assert recorded == observed
    ends = [(r["warehouse"], r["sku"], r["ts_ms"]) for r in w.truth.of_type("stockout_end")]
    assert ends == recovered
    for r in w.truth.of_type("stockout_end"):
        assert r["start_ms"] < r["ts_ms"]
        assert r["lost"] >= 0


def run_pair(extra: str, days: float = 5) -> tuple[World, list, list]:  # type: ignore[type-arg]
    faulty, clean = new_world(small_scenario(extra)), new_world(small_scenario())
    a, b = collect(faulty), collect(clean)
    end = MONDAY + round(days * DAY_MS)
    faulty.advance_to(end)
    clean.advance_to(end)
    return faulty, a, b


def window(world: World, kind: FaultKind) -> tuple[int, int]:
    record = next(r for r in world.truth.of_type("fault") if r["kind"] == kind.value)
    return record["start_ms"], record["end_ms"]


def test_an_injected_flatline_is_flat_and_changes_nothing_else() -> None:
    w, faulty, clean = run_pair(fault("flatline", "p1.level", at_h=30, duration_h=5))
    start, end = window(w, FaultKind.FLATLINE)
    assert (start, end) == (MONDAY + 30 * HOUR_MS, MONDAY + 35 * HOUR_MS)
    inside = [s for s in by_signal(faulty, "p1.level") if start <= s.ts < end]
    assert len(inside) == 300
    assert len({s.value for s in inside}) == 1
    assert inside[0] == next(s for s in clean if s.signal == "p1.level" and s.ts == start)
    assert [s for s in faulty if not start <= s.ts < end or s.signal != "p1.level"] == [
        s for s in clean if not start <= s.ts < end or s.signal != "p1.level"
    ]
    before = [s.value for s in by_signal(faulty, "p1.level") if start - HOUR_MS <= s.ts < start]
    assert len(set(before)) > 10  # outside the fault the sensor is noisy, as it should be


def test_drift_grows_at_its_rate() -> None:
    w, faulty, clean = run_pair(fault("drift", "b1.weight", at_h=10, duration_h=20, rate_per_h=2.0))
    start, end = window(w, FaultKind.DRIFT)
    pairs = zip(by_signal(faulty, "b1.weight"), by_signal(clean, "b1.weight"), strict=True)
    checked = 0
    for f, c in pairs:
        assert f.ts == c.ts
        assert f.value is not None
        assert c.value is not None
        expected = 2.0 * (f.ts - start) / HOUR_MS if start <= f.ts < end else 0.0
        assert f.value - c.value == pytest.approx(expected, abs=0.051)  # resolution 0.05
        checked += start <= f.ts < end
    assert checked == 240


def test_dropout_spikes_counter_reset_and_stoppage_show_in_the_data() -> None:
    extra = (
        fault("dropout", "l1.count", at_h=40, duration_h=2)
        + fault("spikes", "l1.temp", at_h=30, duration_h=6, probability=0.5, magnitude=30)
        + fault("counter_reset", "L1", at_h=55)
        + fault("line_stoppage", "L1", at_h=80, duration_h=3)
    )
    w, faulty, clean = run_pair(extra)
    start, end = window(w, FaultKind.DROPOUT)
    for s in by_signal(faulty, "l1.count"):
        assert (s.value is None) == (start <= s.ts < end)
        assert (s.quality is Quality.COMM_FAILURE) == (start <= s.ts < end)
    start, end = window(w, FaultKind.SPIKES)
    stoppage = window(w, FaultKind.LINE_STOPPAGE)[0]  # a stopped line cools: compare before it
    diffs = [
        (f.ts, round(f.value - c.value, 1))
        for f, c in zip(by_signal(faulty, "l1.temp"), by_signal(clean, "l1.temp"), strict=True)
        if f.value is not None and c.value is not None and f.value != c.value and f.ts < stoppage
    ]
    assert 40 < len(diffs) < 140  # about half of 180 samples
    assert all(start <= t < end for t, _ in diffs)
    assert {d for _, d in diffs} <= {30.0, -30.0}
    reset_at = window(w, FaultKind.COUNTER_RESET)[0]
    counts = [(s.ts, s.value) for s in by_signal(faulty, "l1.count") if s.value is not None]
    before = [v for t, v in counts if t < reset_at][-1]
    after = [v for t, v in counts if t >= reset_at]
    assert before is not None
    assert before > 500
    assert after[0] is not None
    assert after[0] < 5
    start, end = window(w, FaultKind.LINE_STOPPAGE)
    during = {s.value for s in by_signal(faulty, "l1.count") if start < s.ts < end}
    assert len(during) == 1  # the counter stands still while the line is stopped
    assert any(r["type"] == "fault" and r["kind"] == "line_stoppage" for r in w.truth.records)


def test_production_plan_deviations_match_the_counts() -> None:
    w = new_world(small_scenario(fault("line_stoppage", "L1", at_h=32, duration_h=4)), seed=5)
    made: dict[int, int] = {}
    for d in range(1, 15):
        midnight = MONDAY + d * DAY_MS
        w.advance_to(midnight)
        made[midnight] = w.lines["L1"].good_by_sku["P1"]
    records = {
        r["start_ms"]: r for r in w.truth.of_type("plan_deviation") if r["scope"] == "production"
    }
    expected = set()
    previous = 0
    for midnight, total in made.items():
        day = midnight - DAY_MS
        actual = total - previous
        previous = total
        target = 800 if (day - MONDAY) // DAY_MS % 7 < 5 else 0
        if target and abs(actual - target) / target > 0.1:
            expected.add(day)
            assert records[day]["actual"] == actual
            assert records[day]["planned"] == target
    assert set(records) == expected
    assert MONDAY + DAY_MS in expected  # the stoppage day missed its target


def test_demand_deviation_compares_a_bucket_with_the_plan() -> None:
    surge = fault("demand_surge", "P1", at_h=24, duration_h=48, multiplier=3)
    w = new_world(small_scenario(surge))
    w.advance_to(MONDAY + 7 * DAY_MS + 1)
    demand = [r for r in w.truth.of_type("plan_deviation") if r["scope"] == "demand"]
    p1 = next(r for r in demand if r["sku"] == "P1")
    assert (p1["start_ms"], p1["end_ms"]) == (MONDAY, MONDAY + 7 * DAY_MS)
    assert p1["planned"] == pytest.approx(900 * 7)
    assert p1["actual"] == w.stock[("W1", "P1")].demanded
    assert p1["deviation"] > 0.25


def test_the_partial_first_day_is_not_judged_and_orders_follow_the_calendar() -> None:
    start = MONDAY + 9 * HOUR_MS
    w = World(small_scenario(), seed=1, start_ms=start)
    assert w.tracker.first_full_day == MONDAY + DAY_MS
    w.advance_to(MONDAY + 7 * DAY_MS - 1)
    days = sorted({o.day for o in w.orders.orders()})
    assert days == ["2026-01-05", "2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09"]
    assert all(r["start_ms"] >= MONDAY + DAY_MS for r in w.truth.of_type("plan_deviation"))
    assert day_start(start) == MONDAY


def test_random_faults_are_drawn_every_week_and_recorded() -> None:
    extra = """
[[random_faults]]
kind = "spikes"
targets = ["p1.level", "l1.temp"]
per_week = 3
duration_h = [1, 2]
magnitude = 5
"""
    w = new_world(small_scenario(extra))
    w.advance_to(MONDAY + 6 * 7 * DAY_MS)
    random_faults = [r for r in w.truth.of_type("fault") if r["random"]]
    assert 8 <= len(random_faults) <= 32
    assert {r["target"] for r in random_faults} == {"p1.level", "l1.temp"}
    for r in random_faults:
        assert HOUR_MS <= r["end_ms"] - r["start_ms"] <= 2 * HOUR_MS
    starts = [r["start_ms"] for r in w.truth.records if r["type"] == "fault"]
    assert starts == sorted(starts)  # recorded when they happen, in time order
