"""The simulator's plan as the cloud's plan book: it parses, and says what the scenario says."""

from __future__ import annotations

from cloud_service.plans.codec import parse_plan_toml
from firmware_sim.core.calendar import DAY_MS
from firmware_sim.plan_export import plan_toml
from firmware_sim.scenario import default_scenario

MONDAY = 1_767_571_200_000  # 2026-01-05 00:00 UTC


def test_default_scenario_plan_round_trips_into_a_plan_book() -> None:
    book = parse_plan_toml(plan_toml(default_scenario(), seed=1, start_ms=MONDAY, days=7))
    assert {(p.sku, p.location) for p in book.skus} == {
        ("A-113", "W2"), ("B-220", "W2"), ("E-500", "W2"), ("C-310", "W1"), ("D-415", "W1"),
    }  # fmt: skip
    a113 = book.policy("demo-plant", "A-113", "W2")
    assert a113 is not None
    assert (a113.lead_time_h, a113.safety_stock) == (24.0, 400.0)
    # a target per line and SKU: line3 makes A-113 and B-220, line1 only E-500
    monday = [t for t in book.production if MONDAY <= t.start_ms < MONDAY + DAY_MS]
    targets = {(t.line, t.sku): t for t in monday}
    assert set(targets) == {("line3", "A-113"), ("line3", "B-220"), ("line1", "E-500")}
    assert targets["line3", "A-113"].quantity == 1200
    assert targets["line3", "B-220"].quantity == 360
    a = targets["line3", "A-113"]
    assert a.start_ms == MONDAY + 6 * 3_600_000  # the first shift, 06:00
    assert a.end_ms == MONDAY + 22 * 3_600_000
    # line3's own counter counts both: it is held to their sum
    running = book.production_at("demo-plant", "line3", MONDAY + 7 * 3_600_000)
    assert sum(t.quantity for t in running) == 1200 + 360
    saturday = MONDAY + 5 * DAY_MS
    assert book.production_at("demo-plant", "line3", saturday + 10 * 3_600_000) == []
    demand = book.demand_at("demo-plant", "A-113", MONDAY + 3_600_000, "W2")
    assert demand is not None
    assert demand.quantity > 0
