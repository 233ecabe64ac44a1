"""The simulated plant's S&OP plan and SKU master data as the cloud's plan book (TOML).

What the cloud needs to compare the plant with its plan (docs/plans.md): per SKU its lead time
and safety stock (``[[skus]]``); per line and day its target over the day's scheduled hours
(``[[production]]``, one per SKU the line is to make that day: a counter of the whole line is
compared with their sum, a count per SKU, such as the MES's, with its own); per SKU and day
the planned demand (``[[demand]]``). The demo imports it with ``cloud-service plans import``;
the tests build their ``PlanBook`` from it.
"""

from __future__ import annotations

from firmware_sim.core.calendar import DAY_MS, day_start
from firmware_sim.core.world import World
from firmware_sim.scenario.model import Scenario

DEFAULT_LEAD_TIME_H = 24.0  # a SKU only a line refills: a day of production


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plan_toml(scenario: Scenario, *, seed: int, start_ms: int, days: int) -> str:
    """The plan of ``days`` days from the day of ``start_ms`` (UTC), as plan-book TOML."""
    world = World(scenario, seed=seed, start_ms=start_ms)
    return world_plan_toml(world, days)


def world_plan_toml(world: World, days: int) -> str:
    site = _quote(world.scenario.site)
    out = ["# The S&OP plan of a simulated plant (firmware_sim.plan_export)", ""]
    for k in world.scenario.skus():
        lead = k.replenishment.lead_time_h or DEFAULT_LEAD_TIME_H
        out += [
            "[[skus]]", f"site = {site}", f"sku = {_quote(k.sku)}",
            f"location = {_quote(k.warehouse)}", f"lead_time_h = {lead!r}",
            f"safety_stock = {float(k.safety_stock)!r}", "",
        ]  # fmt: skip
    first = day_start(world.start_ms)
    for d in range(days):
        day = first + d * DAY_MS
        for line_id, sku, target in world.plan.production_targets(day):
            spans = world.lines[line_id].shifts.intervals(day, day + DAY_MS)
            if target <= 0 or not spans:
                continue
            out += [
                "[[production]]", f"site = {site}", f"line = {_quote(line_id)}",
                f"sku = {_quote(sku)}", f"start_ms = {max(spans[0][0], day)}",
                f"end_ms = {min(spans[-1][1], day + DAY_MS)}",
                f"quantity = {float(target)!r}", 'period = "day"', "",
            ]  # fmt: skip
        for wh, sku, planned in world.plan.demand_plan(day):
            out += [
                "[[demand]]", f"site = {site}", f"sku = {_quote(sku)}",
                f"location = {_quote(wh)}", f"start_ms = {day}", f"end_ms = {day + DAY_MS}",
                f"quantity = {float(planned)!r}", "",
            ]  # fmt: skip
    return "\n".join(out)
