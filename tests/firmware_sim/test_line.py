"""Production lines: exact rates, shifts and stops, scrap per piece, PLC counters that roll
over and reset, and results that do not depend on how often the line is observed."""

from __future__ import annotations

import dataclasses

import pytest
from sim_scenarios import DAY_MS, HOUR_MS, MONDAY, small_scenario

from firmware_sim.core.calendar import MINUTE_MS
from firmware_sim.core.line import LineState, ProductionLine
from firmware_sim.core.orders import OrderBook, OrderStatus
from firmware_sim.core.streams import stream
from firmware_sim.scenario.model import LineSpec


def make(
    spec: LineSpec | None = None, seed: int = 1, start: int = MONDAY
) -> tuple[ProductionLine, OrderBook, list[tuple[int, str, int]], list[tuple[int, int]]]:
    spec = spec or small_scenario().lines[0]
    orders = OrderBook()
    output: list[tuple[int, str, int]] = []
    failures: list[tuple[int, int]] = []
    line = ProductionLine(
        spec,
        failures=stream(seed, "f"),
        scrap=stream(seed, "s"),
        start_ms=start,
        orders=orders,
        on_output=lambda t, sku, q: output.append((t, sku, q)),
        on_failure=lambda a, b: failures.append((a, b)),
    )
    return line, orders, output, failures


def run_until(line: ProductionLine, end: int, extra: list[int] | None = None) -> None:
    """Drive the line as the world does: wake at its events, observe at ``extra`` times."""
    looks = sorted(extra or [])
    while True:
        nxt = line.next_event()
        while looks and (nxt is None or looks[0] < nxt) and looks[0] <= end:
            line.advance(looks.pop(0))
        if nxt is None or nxt > end:
            line.advance(end)
            return
        line.wake(nxt)


def reliable(**kw: object) -> LineSpec:
    return dataclasses.replace(small_scenario().lines[0], mtbf_h=0.0, **kw)  # type: ignore[arg-type]


def test_runs_at_its_rate_only_on_shift_and_outside_planned_stops() -> None:
    line, orders, output, _ = make(reliable(scrap_rate=0.0))
    orders.release(MONDAY, "L1", "P1", 10_000)
    line.evaluate(MONDAY)
    assert (line.state, line.reason) == (LineState.IDLE, "off_shift")
    run_until(line, MONDAY + 6 * HOUR_MS)
    assert line.good_total == 0
    run_until(line, MONDAY + 12 * HOUR_MS + 10 * MINUTE_MS)
    assert (line.state, line.reason) == (LineState.PLANNED_DOWN, "planned_stop")
    assert line.good_total == 6 * 60  # 60/h for 6 h
    run_until(line, MONDAY + DAY_MS)
    assert line.good_total == round(15.5 * 60)  # 16 h on shift minus a 30 min stop
    assert sum(q for _, _, q in output) == line.good_total - line.pending
    assert all(q == 25 for _, _, q in output)  # whole lots


def test_orders_complete_and_the_line_then_idles() -> None:
    line, orders, output, _ = make(reliable(scrap_rate=0.0))
    order = orders.release(MONDAY, "L1", "P1", 100)
    line.evaluate(MONDAY)
    run_until(line, MONDAY + 9 * HOUR_MS)
    assert order.status is OrderStatus.COMPLETED
    assert order.completed_ms == MONDAY + 6 * HOUR_MS + 100 * MINUTE_MS
    assert order.started_ms == MONDAY + 6 * HOUR_MS + MINUTE_MS
    assert (line.state, line.reason) == (LineState.IDLE, "no_order")
    assert sum(q for _, _, q in output) == 100  # the remainder of the last lot was moved too


def test_scrap_and_counts_do_not_depend_on_how_often_the_line_is_observed() -> None:
    results = []
    for looks in ([], list(range(MONDAY, MONDAY + 2 * DAY_MS, 7 * MINUTE_MS + 13))):
        line, orders, output, failures = make(small_scenario().lines[0], seed=3)
        orders.release(MONDAY, "L1", "P1", 5000)
        line.evaluate(MONDAY)
        run_until(line, MONDAY + 2 * DAY_MS, looks)
        results.append((line.good_total, line.scrap_total, output, failures, line.progress_ms))
    assert results[0] == results[1]
    good, scrap = results[0][0], results[0][1]
    assert scrap / (good + scrap) == pytest.approx(0.05, abs=0.02)
    assert results[0][3]  # mtbf 20 h: it failed at least once in 2 days of 15.5 h


def test_failures_stop_the_line_for_the_repair_time() -> None:
    line, orders, _, failures = make(dataclasses.replace(small_scenario().lines[0], mtbf_h=1.0))
    orders.release(MONDAY, "L1", "P1", 10_000)
    line.evaluate(MONDAY)
    run_until(line, MONDAY + 10 * HOUR_MS)
    assert failures
    start, end = failures[0]
    assert end - start >= MINUTE_MS
    line2, orders2, _, _ = make(dataclasses.replace(small_scenario().lines[0], mtbf_h=1.0))
    orders2.release(MONDAY, "L1", "P1", 10_000)
    line2.evaluate(MONDAY)
    run_until(line2, (start + end) // 2)
    assert (line2.state, line2.reason) == (LineState.DOWN, "failure")
    count = line2.good_total + line2.scrap_total
    run_until(line2, end - 1)
    assert line2.good_total + line2.scrap_total == count  # nothing made while down


def test_sixteen_bit_counters_roll_over_and_reset() -> None:
    fast = reliable(scrap_rate=0.0, counter_bits=16, lot_size=1000)
    fast = dataclasses.replace(
        fast, products=(dataclasses.replace(fast.products[0], rate_per_h=36_000.0),)
    )
    line, orders, _, _ = make(fast)
    orders.release(MONDAY, "L1", "P1", 10**6)
    line.evaluate(MONDAY)
    run_until(line, MONDAY + 6 * HOUR_MS + 2 * HOUR_MS)  # 72,000 pieces
    assert line.good_total == 72_000
    assert line.good_counter == 72_000 - 65_536
    line.reset_counters(MONDAY + 8 * HOUR_MS)
    assert line.good_counter == 0
    run_until(line, MONDAY + 8 * HOUR_MS + 60_000)
    assert line.good_counter == 600
    assert line.good_total == 72_600  # the totaliser never resets


def test_temperature_follows_the_state_with_a_lag() -> None:
    line, orders, _, _ = make(reliable())
    spec = line.spec
    orders.release(MONDAY, "L1", "P1", 10_000)
    line.evaluate(MONDAY)
    assert line.temperature(MONDAY) == spec.ambient_c
    run_until(line, MONDAY + 6 * HOUR_MS + 20 * MINUTE_MS)  # one time constant of running
    rise = spec.running_c - spec.ambient_c
    assert line.temperature(line.t) == pytest.approx(
        spec.ambient_c + rise * (1 - 1 / 2.718281828), rel=1e-3
    )
    assert line.vibration() == spec.vibration_running
