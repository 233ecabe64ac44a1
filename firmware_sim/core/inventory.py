"""The true stock of one SKU in one warehouse, its replenishment policy and its stockouts.

Demand is served from stock; what stock cannot cover is lost (lost sales, not backorders), so
stock never goes negative. Receipts (supplier deliveries, production lots) arrive as jumps.
Replenishment is continuous review on the inventory position (on hand + on order): ``sQ``
orders ``Q`` until the position is above ``s``; ``sS`` orders up to ``S``; ``none`` relies on
production alone. A stockout starts at the exact event that takes stock from above zero to
zero and ends at the first receipt after it: these are the ground truth the time-to-stockout
forecasts are scored against.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from firmware_sim.core.calendar import HOUR_MS
from firmware_sim.scenario.model import ReplenishPolicy, SkuSpec

#: ``(event, t_ms, stock_point)`` with event ``"stockout"`` or ``"stockout_end"``.
StockoutHook = Callable[[str, int, "StockPoint"], None]


class StockPoint:
    def __init__(
        self, spec: SkuSpec, rng: np.random.Generator, *, start_ms: int, hook: StockoutHook
    ) -> None:
        self.spec = spec
        self.warehouse = spec.warehouse
        self.sku = spec.sku
        self._rng = rng
        self._hook = hook
        self.stock = spec.initial_stock
        self.on_order = 0
        self.demanded = 0
        self.served = 0
        self.lost = 0
        self.received = 0
        self.out_since: int | None = None
        self.lost_in_stockout = 0
        if self.stock == 0:
            self._stockout(start_ms)

    @property
    def position(self) -> int:
        return self.stock + self.on_order

    def _stockout(self, t_ms: int) -> None:
        self.out_since = t_ms
        self.lost_in_stockout = 0
        self._hook("stockout", t_ms, self)

    def demand(self, t_ms: int, quantity: int) -> int:
        """Serve ``quantity`` now; returns what was served (the rest is lost)."""
        served = min(quantity, self.stock)
        was_positive = self.stock > 0
        self.stock -= served
        self.demanded += quantity
        self.served += served
        self.lost += quantity - served
        if was_positive and self.stock == 0:
            self._stockout(t_ms)
        if self.out_since is not None:
            self.lost_in_stockout += quantity - served
        return served

    def receive(self, t_ms: int, quantity: int, *, ordered: bool) -> None:
        """A receipt: a supplier delivery (``ordered``) or a production lot."""
        if quantity <= 0:
            return
        self.stock += quantity
        self.received += quantity
        if ordered:
            self.on_order -= quantity
        if self.out_since is not None:
            self._hook("stockout_end", t_ms, self)
            self.out_since = None

    def reorder(self) -> list[int]:
        """Orders to place now under the policy (quantities; usually none or one)."""
        rep = self.spec.replenishment
        if rep.policy is ReplenishPolicy.NONE or self.position > rep.reorder_point:
            return []
        if rep.policy is ReplenishPolicy.SS:
            quantities = [rep.quantity - self.position]
        else:
            count = (rep.reorder_point - self.position) // rep.quantity + 1
            quantities = [rep.quantity] * count
        self.on_order += sum(quantities)
        return quantities

    def lead_time_ms(self) -> int:
        """A supplier lead time: fixed, or gamma distributed around the mean."""
        rep = self.spec.replenishment
        mean = rep.lead_time_h * HOUR_MS
        if rep.lead_time_cv == 0 or mean == 0:
            return round(mean)
        shape = 1.0 / rep.lead_time_cv**2
        return max(1, round(float(self._rng.gamma(shape, mean / shape))))
