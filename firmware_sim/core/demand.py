"""Customer demand for one SKU at one warehouse: orders (time, quantity), drawn a day at a time.

Orders arrive as a Poisson process whose daily rate is ``orders_per_day`` times the day's
modulation (weekly seasonality x linear trend x planned promotions); order sizes are gamma
distributed with mean ``mean_per_day / orders_per_day`` and squared coefficient of variation
``size_cv2``, rounded to whole pieces (at least one). Frequent small orders with steady sizes
give *smooth* daily totals; frequent orders with wild sizes *erratic*; rare orders
*intermittent*, rare and wild *lumpy* (Syntetos-Boylan; presets in the scenario model).

Drawing a whole day at once makes demand independent of how the world is stepped or sampled.
Surges are unplanned (injected faults): extra orders drawn from a separate stream, so a surge
changes nothing outside its window. :meth:`DemandProcess.expected` is the planned expectation
(no surges) that the S&OP demand plan is built from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_sim.core.calendar import DAY_MS, HOUR_MS, day_start, weekday
from firmware_sim.scenario.model import DemandSpec


@dataclass(frozen=True, slots=True)
class Surge:
    start_ms: int
    end_ms: int
    multiplier: float


class DemandProcess:
    def __init__(
        self,
        spec: DemandSpec,
        rng: np.random.Generator,
        surge_rng: np.random.Generator,
        *,
        start_ms: int,
    ) -> None:
        self.spec = spec
        self._rng = rng
        self._surge_rng = surge_rng
        self.start_ms = start_ms
        self.first_day = day_start(start_ms)
        self._surges: list[Surge] = []
        self.mean_size = spec.mean_per_day / spec.orders_per_day

    def add_surge(self, surge: Surge) -> None:
        """Register a surge before the days it touches are drawn."""
        self._surges.append(surge)

    def day_index(self, day_ms: int) -> int:
        return (day_start(day_ms) - self.first_day) // DAY_MS

    def expected(self, day_ms: int) -> float:
        """Expected demand of the day starting at ``day_ms``, surges excluded (the plan)."""
        s = self.spec
        d = self.day_index(day_ms)
        factor = s.weekly[weekday(day_ms)] * max(0.0, 1.0 + s.trend_per_week * d / 7)
        for p in s.promotions:
            if p.start_day <= d < p.start_day + p.days:
                factor *= p.uplift
        return s.mean_per_day * factor

    def _window(self, day_ms: int) -> tuple[int, int]:
        lo, hi = self.spec.open_hours
        return day_ms + round(lo * HOUR_MS), day_ms + round(hi * HOUR_MS)

    def _sizes(self, rng: np.random.Generator, n: int) -> list[int]:
        cv2 = self.spec.size_cv2
        if cv2 == 0:
            raw = np.full(n, self.mean_size)
        else:
            raw = rng.gamma(1.0 / cv2, self.mean_size * cv2, n)
        return [int(q) for q in np.maximum(1, np.rint(raw))]

    def orders_for_day(self, day_ms: int) -> list[tuple[int, int]]:
        """Orders ``(t_ms, quantity)`` of the UTC day at ``day_ms``, sorted, none before start.

        Call once per day, in order: each call consumes the SKU's random stream.
        """
        if self.mean_size <= 0:
            return []
        open_ms, close_ms = self._window(day_ms)
        rate = self.expected(day_ms) / self.mean_size  # orders expected in the open window
        n = int(self._rng.poisson(rate))
        times = self._rng.integers(open_ms, close_ms, n).tolist()
        orders = list(zip(times, self._sizes(self._rng, n), strict=True))
        for surge in self._surges:
            orders = self._apply_surge(orders, surge, rate, open_ms, close_ms)
        return sorted(o for o in orders if o[0] >= self.start_ms)

    def _apply_surge(
        self,
        orders: list[tuple[int, int]],
        surge: Surge,
        rate: float,
        open_ms: int,
        close_ms: int,
    ) -> list[tuple[int, int]]:
        lo, hi = max(surge.start_ms, open_ms), min(surge.end_ms, close_ms)
        if lo >= hi:
            return orders
        if surge.multiplier >= 1:
            share = (hi - lo) / (close_ms - open_ms)
            n = int(self._surge_rng.poisson((surge.multiplier - 1) * rate * share))
            times = self._surge_rng.integers(lo, hi, n).tolist()
            return orders + list(zip(times, self._sizes(self._surge_rng, n), strict=True))
        keep = surge.multiplier  # a drop: thin the orders inside the window
        return [o for o in orders if not lo <= o[0] < hi or self._surge_rng.random() < keep]
