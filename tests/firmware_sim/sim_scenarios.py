"""Scenarios and helpers shared by the simulator tests (import: ``from sim_scenarios import``)."""

from __future__ import annotations

from firmware_sim.core.calendar import DAY_MS, HOUR_MS
from firmware_sim.core.sensors import Sample
from firmware_sim.core.world import World
from firmware_sim.scenario import Scenario, parse_scenario

#: Monday 2026-01-05 00:00 UTC.
MONDAY = 1_767_571_200_000

#: A small plant: one warehouse with a produced and a purchased SKU, one line, a few signals.
SMALL = """\
site = "t-plant"

[[warehouses]]
id = "W1"
  [[warehouses.skus]]
  sku = "P1"
  initial_stock = 300
    [warehouses.skus.demand]
    pattern = "smooth"
    mean_per_day = 900
    [warehouses.skus.replenishment]
    policy = "sQ"
    reorder_point = 100
    quantity = 400
    lead_time_h = 12
  [[warehouses.skus]]
  sku = "B1"
  initial_stock = 50
    [warehouses.skus.demand]
    pattern = "lumpy"
    mean_per_day = 20
    [warehouses.skus.replenishment]
    policy = "sS"
    reorder_point = 10
    quantity = 60
    lead_time_h = 30

[[lines]]
id = "L1"
warehouse = "W1"
counter_bits = 16
lot_size = 25
mtbf_h = 20
mttr_min = 30
scrap_rate = 0.05
shifts = [{ start = "06:00", end = "22:00", days = "mon-fri" }]
planned_stops = [{ start = "12:00", minutes = 30, days = "mon-fri" }]
  [[lines.products]]
  sku = "P1"
  rate_per_h = 60
  daily_target = 800

[[signals]]
id = "p1.level"
type = "level"
warehouse = "W1"
sku = "P1"
period_s = 60
noise = 0.5
resolution = 0.1

[[signals]]
id = "b1.weight"
type = "load_cell"
warehouse = "W1"
sku = "B1"
period_s = 300
noise = 0.2
resolution = 0.05
offset = 10

[[signals]]
id = "l1.count"
type = "counter"
line = "L1"
period_s = 60

[[signals]]
id = "l1.temp"
type = "temperature"
line = "L1"
period_s = 120
noise = 0.2
resolution = 0.1

[[modbus]]
unit = 3
  [[modbus.registers]]
  signal = "p1.level"
  address = 0
  [[modbus.registers]]
  signal = "l1.count"
  address = 2
  type = "uint16"

[[mqtt_devices]]
gateway = "ss-1"
signals = ["b1.weight", "p1.level"]
publish_s = 0.2
"""


def small_scenario(extra: str = "") -> Scenario:
    return parse_scenario(SMALL + extra, source="small.toml")


def collect(world: World) -> list[Sample]:
    samples: list[Sample] = []
    world.add_listener(samples.append)
    return samples


def by_signal(samples: list[Sample], signal: str) -> list[Sample]:
    return [s for s in samples if s.signal == signal]


def new_world(scenario: Scenario | None = None, *, seed: int = 1, start_ms: int = MONDAY) -> World:
    return World(scenario or small_scenario(), seed=seed, start_ms=start_ms)


__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MONDAY",
    "SMALL",
    "by_signal",
    "collect",
    "new_world",
    "small_scenario",
]
