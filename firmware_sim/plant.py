"""A seeded, pure stock process for one warehouse SKU, and the level sensor that watches it.

The model is a continuous-review (s, Q) policy, stepped by the caller:

1. a replenishment receipt whose lead time has elapsed is booked in (stock jumps up by the
   order quantity);
2. demand for the step is drawn from a Poisson distribution with mean
   ``demand_per_s * dt_s`` and served from stock; what stock cannot cover is lost (counted in
   :attr:`StockProcess.lost_demand`, never backordered, so stock never goes negative);
3. when the inventory position (on hand plus on order) is at or below the reorder point, one
   order of ``order_quantity`` is placed, due ``lead_time_steps`` steps later.

The sensor adds Gaussian noise and quantises to its resolution, as a level or weight sensor
does. Demand and sensor noise draw from two independent streams spawned from one seed, so
reading the sensor more or less often never changes the demand series. There is no clock and
no I/O here: the same seed and the same sequence of calls give the same numbers on every
machine (numpy's ``Generator`` streams are stable across platforms).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from firmware_sim.errors import PlantParameterError


@dataclass(frozen=True, slots=True)
class StockParams:
    """Parameters of one SKU's stock process and of its level sensor (units: pieces, seconds)."""

    initial_stock: float = 400.0
    demand_per_s: float = 0.5  # mean demand rate; per step it is Poisson(demand_per_s * dt_s)
    reorder_point: float = 100.0
    order_quantity: float = 300.0
    lead_time_steps: int = 120  # a receipt arrives this many steps after its order
    sensor_noise: float = 0.5  # standard deviation of the additive sensor noise
    sensor_resolution: float = 0.1  # readings are multiples of this; 0 disables quantisation

    def __post_init__(self) -> None:
        _require(self, "initial_stock", self.initial_stock >= 0, "must be >= 0")
        _require(self, "demand_per_s", self.demand_per_s >= 0, "must be >= 0")
        _require(self, "reorder_point", self.reorder_point >= 0, "must be >= 0")
        _require(self, "order_quantity", self.order_quantity > 0, "must be > 0")
        _require(self, "lead_time_steps", self.lead_time_steps >= 1, "must be >= 1")
        _require(self, "sensor_noise", self.sensor_noise >= 0, "must be >= 0")
        _require(self, "sensor_resolution", self.sensor_resolution >= 0, "must be >= 0")


def _require(params: StockParams, name: str, ok: bool, reason: str) -> None:
    value = getattr(params, name)
    if isinstance(value, float) and not math.isfinite(value):
        raise PlantParameterError(name, value, "must be finite")
    if not ok:
        raise PlantParameterError(name, value, reason)


class StockProcess:
    """The true stock of one SKU, advanced by :meth:`step`; :meth:`sensor_reading` observes it."""

    def __init__(self, params: StockParams | None = None, *, seed: int = 0) -> None:
        self.params = params or StockParams()
        demand_seq, sensor_seq = np.random.SeedSequence(seed).spawn(2)
        self._demand_rng = np.random.default_rng(demand_seq)
        self._sensor_rng = np.random.default_rng(sensor_seq)
        self._stock = float(self.params.initial_stock)
        self._pending: deque[tuple[int, float]] = deque()  # (due step, quantity), due order
        self.steps = 0
        self.time_s = 0.0
        self.lost_demand = 0.0
        self.last_demand = 0.0  # demand drawn in the last step (served or lost)
        self.last_receipt = 0.0  # quantity received in the last step (0: none)

    @property
    def stock(self) -> float:
        """The true stock on hand (never negative)."""
        return self._stock

    @property
    def on_order(self) -> float:
        """Quantity ordered and not yet received."""
        return sum(quantity for _, quantity in self._pending)

    def step(self, dt_s: float) -> float:
        """Advance the process by ``dt_s`` seconds (one step) and return the true stock."""
        if not (math.isfinite(dt_s) and dt_s > 0):
            raise PlantParameterError("dt_s", dt_s, "must be a finite number > 0")
        p = self.params
        self.steps += 1
        self.time_s += dt_s

        received = 0.0
        while self._pending and self._pending[0][0] <= self.steps:
            received += self._pending.popleft()[1]
        self._stock += received
        self.last_receipt = received

        demand = float(self._demand_rng.poisson(p.demand_per_s * dt_s))
        served = min(demand, self._stock)
        self._stock -= served
        self.lost_demand += demand - served
        self.last_demand = demand

        if self._stock + self.on_order <= p.reorder_point:
            self._pending.append((self.steps + p.lead_time_steps, p.order_quantity))
        return self._stock

    def sensor_reading(self) -> float:
        """What the level sensor reports now: true stock + noise, quantised, never negative."""
        p = self.params
        value = self._stock
        if p.sensor_noise > 0:
            value += float(self._sensor_rng.normal(0.0, p.sensor_noise))
        value = max(value, 0.0)
        if p.sensor_resolution > 0:
            # Round twice: to the grid, then away the binary fraction noise of the product.
            value = round(round(value / p.sensor_resolution) * p.sensor_resolution, 9)
        return value
