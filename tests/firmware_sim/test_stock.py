"""Stock: lost sales never take it below zero, the policies order what they should, and a
stockout is reported at the exact event that takes stock to zero."""

from __future__ import annotations

from firmware_sim.core.inventory import StockPoint
from firmware_sim.core.streams import stream
from firmware_sim.scenario import parse_scenario
from firmware_sim.scenario.model import ReplenishmentSpec, ReplenishPolicy, SkuSpec


def point(
    policy: ReplenishPolicy, s: int, q: int, stock: int = 10, cv: float = 0.0
) -> tuple[StockPoint, list[tuple[str, int]]]:
    events: list[tuple[str, int]] = []
    spec = SkuSpec(
        warehouse="W",
        sku="X",
        initial_stock=stock,
        safety_stock=0,
        unit_weight_kg=1.0,
        demand=None,
        replenishment=ReplenishmentSpec(policy, s, q, lead_time_h=2.0, lead_time_cv=cv),
    )
    hook = lambda event, t, p: events.append((event, t))  # noqa: E731
    return StockPoint(spec, stream(1, "x"), start_ms=0, hook=hook), events


def test_lost_sales_and_stockout_events() -> None:
    p, events = point(ReplenishPolicy.NONE, 0, 1, stock=10)
    assert p.demand(100, 4) == 4
    assert p.demand(200, 6) == 6  # exactly to zero: a stockout, though nothing was lost
    assert events == [("stockout", 200)]
    assert p.demand(300, 5) == 0
    assert (p.stock, p.lost, p.demanded, p.served) == (0, 5, 15, 10)
    p.receive(400, 3, ordered=False)
    assert events[-1] == ("stockout_end", 400)
    assert p.demand(500, 7) == 3
    assert events[-1] == ("stockout", 500)
    assert p.stock == 0


def test_initial_zero_stock_is_a_stockout_at_the_start() -> None:
    _, events = point(ReplenishPolicy.NONE, 0, 1, stock=0)
    assert events == [("stockout", 0)]


def test_sq_orders_q_until_the_position_is_above_s() -> None:
    p, _ = point(ReplenishPolicy.SQ, s=20, q=15, stock=30)
    assert p.reorder() == []
    p.demand(1, 25)  # position 5: needs two orders of 15 to get above 20
    assert p.reorder() == [15, 15]
    assert (p.on_order, p.position) == (30, 35)
    assert p.reorder() == []
    p.receive(2, 15, ordered=True)
    assert (p.stock, p.on_order) == (20, 15)


def test_ss_orders_up_to_s_and_lead_times_vary_with_cv() -> None:
    p, _ = point(ReplenishPolicy.SS, s=10, q=50, stock=12)
    p.demand(1, 4)
    assert p.reorder() == [42]
    assert p.lead_time_ms() == 7_200_000
    varied, _ = point(ReplenishPolicy.SS, s=10, q=50, cv=0.5)
    times = [varied.lead_time_ms() for _ in range(500)]
    assert len(set(times)) > 400
    assert 0.9 * 7_200_000 < sum(times) / len(times) < 1.1 * 7_200_000


def test_defaults_derive_reorder_point_from_safety_stock_and_lead_time() -> None:
    text = """
site = "s"
[[warehouses]]
id = "W"
  [[warehouses.skus]]
  sku = "X"
  initial_stock = 10
  safety_stock = 30
    [warehouses.skus.demand]
    mean_per_day = 48
    [warehouses.skus.replenishment]
    lead_time_h = 36
"""
    rep = parse_scenario(text).skus()[0].replenishment
    assert rep.policy is ReplenishPolicy.SQ
    assert rep.reorder_point == 30 + 72  # safety stock + mean demand over the lead time
    assert rep.quantity == 48 * 7  # a week of demand
