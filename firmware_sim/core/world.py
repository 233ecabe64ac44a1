"""The simulated plant: every entity of a scenario on one event queue, advanced on demand.

``World(scenario, seed=..., start_ms=...)`` builds the stock points, demand processes,
production lines, order book, S&OP plan, sensors and faults, and :meth:`World.advance_to`
runs every event up to a time in order. Servers call it with the clock's "now", the backfill
with a far-away end; either way the state at a given simulated time is the same, because
nothing depends on how often or in which steps the world is advanced. Sensors sample on their
own grid (``start + k x period``), and every sample goes to the listeners (the MQTT devices,
the backfill); servers read the latest sample.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from firmware_sim.core.calendar import DAY_MS, WEEK_MS, day_start, week_start
from firmware_sim.core.demand import DemandProcess, Surge
from firmware_sim.core.events import EventQueue
from firmware_sim.core.faults import Fault, RandomFaults, scheduled
from firmware_sim.core.inventory import StockPoint
from firmware_sim.core.line import LineSnapshot, ProductionLine
from firmware_sim.core.orders import OrderBook
from firmware_sim.core.plan import Plan, PlanTracker
from firmware_sim.core.sensors import Probe, Sample, Sensor
from firmware_sim.core.streams import NormalDraws, UniformDraws, stream
from firmware_sim.core.truth import Truth
from firmware_sim.errors import UnknownEntityError
from firmware_sim.scenario.model import FaultKind, Scenario, SensorType, SignalSpec

Key = tuple[str, str]
Listener = Callable[[Sample], None]


class World:
    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        start_ms: int,
        sample_floor_s: float = 0.0,
        truth: Truth | None = None,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.start_ms = start_ms
        self.t = start_ms
        self.queue = EventQueue()
        self.truth = truth if truth is not None else Truth()
        self.orders = OrderBook()
        self._listeners: list[Listener] = []
        self.stock: dict[Key, StockPoint] = {}
        self.demand: dict[Key, DemandProcess] = {}
        for k in scenario.skus():
            key = (k.warehouse, k.sku)
            rng = stream(seed, "lead-time", *key)
            self.stock[key] = StockPoint(k, rng, start_ms=start_ms, hook=self._on_stockout)
            if k.demand is not None:
                self.demand[key] = DemandProcess(
                    k.demand,
                    stream(seed, "demand", *key),
                    stream(seed, "surge", *key),
                    start_ms=start_ms,
                )
        self.lines: dict[str, ProductionLine] = {}
        self._versions: dict[str, int] = {}
        for spec in scenario.lines:
            self.lines[spec.id] = ProductionLine(
                spec,
                failures=stream(seed, "failures", spec.id),
                scrap=stream(seed, "scrap", spec.id),
                start_ms=start_ms,
                orders=self.orders,
                on_output=partial(self._on_output, spec.warehouse),
                on_failure=partial(self._on_failure, spec.id),
            )
            self._versions[spec.id] = 0
        self.plan = Plan(scenario, self.demand, {k: v.shifts for k, v in self.lines.items()})
        self.tracker = PlanTracker(self.plan, scenario.plan, self.truth, start_ms=start_ms)
        floor_ms = round(sample_floor_s * 1000)
        self.sensors: dict[str, Sensor] = {}
        self._periods: dict[str, int] = {}
        for sig in scenario.signals:
            sensor = Sensor(
                sig,
                self._probe(sig),
                NormalDraws(stream(seed, "noise", sig.id)),
                UniformDraws(stream(seed, "spikes", sig.id)),
            )
            self.sensors[sig.id] = sensor
            self._periods[sig.id] = max(sensor.period_ms, floor_ms)
        self._offline: dict[str, int] = {}
        self._clock_offsets: dict[str, int] = {}
        self.faults: list[Fault] = []
        self.truth.emit(
            {
                "type": "run",
                "scenario": scenario.name,
                "site": scenario.site,
                "seed": seed,
                "start_ms": start_ms,
            }
        )
        self._start()

    # --- construction --------------------------------------------------------------------
    def _probe(self, sig: SignalSpec) -> Probe:
        if sig.type in {SensorType.LEVEL, SensorType.LOAD_CELL}:
            point = self.stock[(sig.warehouse or "", sig.sku or "")]
            weight = point.spec.unit_weight_kg if sig.type is SensorType.LOAD_CELL else 1.0
            return lambda t: point.stock * weight
        line = self.lines[sig.line or ""]
        if sig.type is SensorType.COUNTER:
            if sig.counter == "scrap":
                return lambda t: float(line.scrap_counter)
            return lambda t: float(line.good_counter)
        if sig.type is SensorType.TEMPERATURE:
            return line.temperature
        return lambda t: line.vibration()

    def _start(self) -> None:
        t = self.start_ms
        self._random = [
            RandomFaults(i, spec, stream(self.seed, "random-faults", str(i)))
            for i, spec in enumerate(self.scenario.random_faults)
        ]
        for fault in scheduled(self.scenario.faults, t):
            self._add_fault(fault)
        first_week = week_start(t)
        self._draw_random(first_week)
        self._draw_random(first_week + WEEK_MS)
        self.queue.schedule(first_week + WEEK_MS, self._on_week)
        self._release_orders(t)
        self._draw_demand(day_start(t))
        for point in self.stock.values():
            self._reorder(t, point)
        self.queue.schedule(day_start(t) + DAY_MS, self._on_midnight)
        for line_id in self.lines:
            self._reschedule(line_id)
        for sensor_id in self.sensors:
            self.queue.schedule(t, partial(self._on_sample, sensor_id))

    # --- running -------------------------------------------------------------------------
    def advance_to(self, t_ms: int) -> None:
        """Run every event up to and including ``t_ms``; the world is then at ``t_ms``."""
        if t_ms < self.t:
            return
        while (due := self.queue.pop_due(t_ms)) is not None:
            when, action = due
            self.t = when
            action(when)
        self.t = t_ms
        for line in self.lines.values():
            line.advance(t_ms)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every sample, in time order, as the world reaches it."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    # --- events --------------------------------------------------------------------------
    def _on_sample(self, sensor_id: str, t: int) -> None:
        sensor = self.sensors[sensor_id]
        if sensor.spec.line is not None:
            self.lines[sensor.spec.line].advance(t)
        sample = sensor.sample(t)
        for listener in self._listeners:
            listener(sample)
        self.queue.schedule(t + self._periods[sensor_id], partial(self._on_sample, sensor_id))

    def _on_midnight(self, t: int) -> None:
        for line in self.lines.values():
            line.advance(t)
        made = {
            (lid, sku): n for lid, ln in self.lines.items() for sku, n in ln.good_by_sku.items()
        }
        asked = {key: point.demanded for key, point in self.stock.items()}
        self.tracker.midnight(t, made, asked)
        self._release_orders(t)
        self._draw_demand(t)
        self.queue.schedule(t + DAY_MS, self._on_midnight)

    def _on_week(self, t: int) -> None:
        self._draw_random(t + WEEK_MS)
        self.queue.schedule(t + WEEK_MS, self._on_week)

    def _release_orders(self, t: int) -> None:
        for line_id, sku, target in self.plan.production_targets(t):
            if target > 0:
                self.orders.release(t, line_id, sku, target)
        for line_id, line in self.lines.items():
            line.evaluate(t)
            self._reschedule(line_id)

    def _draw_demand(self, day_ms: int) -> None:
        for key, process in self.demand.items():
            for when, quantity in process.orders_for_day(day_ms):
                self.queue.schedule(when, partial(self._on_demand, key, quantity))

    def _on_demand(self, key: Key, quantity: int, t: int) -> None:
        point = self.stock[key]
        point.demand(t, quantity)
        self._reorder(t, point)

    def _reorder(self, t: int, point: StockPoint) -> None:
        for quantity in point.reorder():
            due = t + point.lead_time_ms()
            self.queue.schedule(due, partial(self._on_receipt, point, quantity))

    @staticmethod
    def _on_receipt(point: StockPoint, quantity: int, t: int) -> None:
        point.receive(t, quantity, ordered=True)

    def _on_output(self, warehouse: str, t: int, sku: str, quantity: int) -> None:
        self.stock[(warehouse, sku)].receive(t, quantity, ordered=False)

    def _on_failure(self, line_id: str, start: int, end: int) -> None:
        self.truth.emit(
            {
                "type": "downtime",
                "line": line_id,
                "cause": "failure",
                "start_ms": start,
                "end_ms": end,
            }
        )

    def _on_stockout(self, event: str, t: int, point: StockPoint) -> None:
        record = {"type": event, "warehouse": point.warehouse, "sku": point.sku, "ts_ms": t}
        if event == "stockout_end":
            record["start_ms"] = point.out_since
            record["lost"] = point.lost_in_stockout
        self.truth.emit(record)

    def _reschedule(self, line_id: str) -> None:
        self._versions[line_id] += 1
        when = self.lines[line_id].next_event()
        if when is not None:
            version = self._versions[line_id]
            self.queue.schedule(when, partial(self._on_line_wake, line_id, version))

    def _on_line_wake(self, line_id: str, version: int, t: int) -> None:
        if version == self._versions[line_id]:
            self.lines[line_id].wake(t)
            self._reschedule(line_id)

    # --- faults --------------------------------------------------------------------------
    def _draw_random(self, week_ms: int) -> None:
        for source in self._random:
            for fault in source.week(week_ms, not_before=self.start_ms):
                self._add_fault(fault)

    def _add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)
        if fault.kind is FaultKind.DEMAND_SURGE:  # demand is drawn a day ahead: tell it now
            surge = Surge(fault.start_ms, fault.end_ms, fault.params.multiplier)
            for (wh, sku), process in self.demand.items():
                if sku == fault.target and fault.warehouse in (None, wh):
                    process.add_surge(surge)
        self.queue.schedule(fault.start_ms, partial(self._on_fault, fault, True))
        if fault.end_ms > fault.start_ms:
            self.queue.schedule(fault.end_ms, partial(self._on_fault, fault, False))

    def _on_fault(self, fault: Fault, starting: bool, t: int) -> None:
        kind, target = fault.kind, fault.target
        if starting:
            self.truth.emit(fault.record())
        if target in self.sensors:
            sensor = self.sensors[target]
            if starting:
                p = fault.params
                sensor.start_fault(
                    fault.id,
                    kind,
                    t,
                    rate_per_h=p.rate_per_h,
                    probability=p.probability,
                    magnitude=p.magnitude,
                )
            else:
                sensor.end_fault(fault.id)
        elif kind is FaultKind.LINE_STOPPAGE:
            self.lines[target].set_stoppage(t, starting)
            self._reschedule(target)
        elif kind is FaultKind.COUNTER_RESET:
            self.lines[target].reset_counters(t)
        elif kind is FaultKind.GATEWAY_OFFLINE:
            self._offline[target] = self._offline.get(target, 0) + (1 if starting else -1)
        elif kind is FaultKind.CLOCK_JUMP:
            step = fault.params.offset_ms if starting else -fault.params.offset_ms
            self._clock_offsets[target] = self._clock_offsets.get(target, 0) + step

    # --- queries -------------------------------------------------------------------------
    def line(self, line_id: str) -> LineSnapshot:
        if line_id not in self.lines:
            raise UnknownEntityError("line", line_id)
        return self.lines[line_id].snapshot()

    def stock_of(self, warehouse: str, sku: str) -> int:
        point = self.stock.get((warehouse, sku))
        if point is None:
            raise UnknownEntityError("stock point", f"{warehouse}/{sku}")
        return point.stock

    def latest(self, signal: str) -> Sample | None:
        sensor = self.sensors.get(signal)
        if sensor is None:
            raise UnknownEntityError("signal", signal)
        return sensor.latest

    def gateway_offline(self, gateway: str) -> bool:
        return self._offline.get(gateway, 0) > 0

    def clock_offset_ms(self, gateway: str) -> int:
        return self._clock_offsets.get(gateway, 0)

    def period_ms(self, signal: str) -> int:
        return self._periods[signal]
