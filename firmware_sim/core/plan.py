"""The S&OP plan, and the tracker that records where reality drifted from it.

The plan holds, for each scheduled day, a production target per line and SKU (the scenario's
``daily_target`` on days the line has shifts) and a demand plan per warehouse and SKU (the
expected demand x ``demand_plan_bias``: promotions are planned, surges are not). The tracker
compares at each midnight: a line's good output of the day against its target, and demand over
a bucket of ``demand_bucket_days`` against the plan; beyond the tolerance it emits a
``plan_deviation`` ground-truth record. The partial first day of a run is not judged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from firmware_sim.core.calendar import DAY_MS, WeeklyCalendar, day_start, iso_day
from firmware_sim.core.demand import DemandProcess
from firmware_sim.core.truth import Truth
from firmware_sim.scenario.model import PlanSpec, Scenario

Key = tuple[str, str]  # (line, sku) or (warehouse, sku)


@dataclass(frozen=True, slots=True)
class PlanDay:
    day: str
    production: list[tuple[str, str, int]]  # (line, sku, target)
    demand: list[tuple[str, str, float]]  # (warehouse, sku, planned demand)


class Plan:
    def __init__(
        self,
        scenario: Scenario,
        demand: Mapping[Key, DemandProcess],
        shifts: Mapping[str, WeeklyCalendar],
    ) -> None:
        self._scenario = scenario
        self._demand = demand
        self._shifts = shifts
        self.bias = scenario.plan.demand_plan_bias

    def production_targets(self, day_ms: int) -> list[tuple[str, str, int]]:
        out = []
        for line in self._scenario.lines:
            scheduled = self._shifts[line.id].minutes_on(day_start(day_ms)) > 0
            for p in line.products:
                out.append((line.id, p.sku, p.daily_target if scheduled else 0))
        return out

    def demand_plan(self, day_ms: int) -> list[tuple[str, str, float]]:
        return [
            (wh, sku, process.expected(day_start(day_ms)) * self.bias)
            for (wh, sku), process in self._demand.items()
        ]

    def day(self, day_ms: int) -> PlanDay:
        return PlanDay(iso_day(day_ms), self.production_targets(day_ms), self.demand_plan(day_ms))


def _deviation(planned: float, actual: float) -> float | None:
    if planned > 0:
        return (actual - planned) / planned
    return None if actual == 0 else float("inf")


class PlanTracker:
    def __init__(self, plan: Plan, spec: PlanSpec, truth: Truth, *, start_ms: int) -> None:
        self._plan = plan
        self._spec = spec
        self._truth = truth
        midnight = day_start(start_ms)
        self.first_full_day = midnight if midnight == start_ms else midnight + DAY_MS
        self._made: dict[Key, int] = {}
        self._asked: dict[Key, int] = {}
        self._bucket_start: int = self.first_full_day
        self._bucket_plan: dict[Key, float] = {}
        self._bucket_asked: dict[Key, int] = {}

    def midnight(self, t_ms: int, made: Mapping[Key, int], asked: Mapping[Key, int]) -> None:
        """Called at each midnight with cumulative good output and demand so far."""
        day = t_ms - DAY_MS
        if day >= self.first_full_day:
            self._judge_production(day, made)
            self._accumulate_demand(day, asked)
            if t_ms - self._bucket_start >= self._spec.demand_bucket_days * DAY_MS:
                self._judge_demand(t_ms)
        self._made = dict(made)
        self._asked = dict(asked)

    def _judge_production(self, day: int, made: Mapping[Key, int]) -> None:
        tolerance = self._spec.production_tolerance
        for line, sku, target in self._plan.production_targets(day):
            actual = made.get((line, sku), 0) - self._made.get((line, sku), 0)
            dev = _deviation(target, actual)
            if target > 0 and dev is not None and abs(dev) > tolerance:
                self._truth.emit(
                    {
                        "type": "plan_deviation",
                        "scope": "production",
                        "line": line,
                        "sku": sku,
                        "day": iso_day(day),
                        "start_ms": day,
                        "end_ms": day + DAY_MS,
                        "planned": target,
                        "actual": actual,
                        "deviation": round(dev, 4),
                    }
                )

    def _accumulate_demand(self, day: int, asked: Mapping[Key, int]) -> None:
        for wh, sku, planned in self._plan.demand_plan(day):
            key = (wh, sku)
            self._bucket_plan[key] = self._bucket_plan.get(key, 0.0) + planned
            got = asked.get(key, 0) - self._asked.get(key, 0)
            self._bucket_asked[key] = self._bucket_asked.get(key, 0) + got

    def _judge_demand(self, t_ms: int) -> None:
        tolerance = self._spec.demand_tolerance
        for (wh, sku), planned in sorted(self._bucket_plan.items()):
            actual = self._bucket_asked.get((wh, sku), 0)
            dev = _deviation(planned, actual)
            if dev is not None and planned > 0 and abs(dev) > tolerance:
                self._truth.emit(
                    {
                        "type": "plan_deviation",
                        "scope": "demand",
                        "warehouse": wh,
                        "sku": sku,
                        "start_ms": self._bucket_start,
                        "end_ms": t_ms,
                        "planned": round(planned, 3),
                        "actual": actual,
                        "deviation": round(dev, 4),
                    }
                )
        self._bucket_start = t_ms
        self._bucket_plan.clear()
        self._bucket_asked.clear()
