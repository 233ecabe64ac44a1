"""The simulator's plant as the cloud sees it: births, telemetry batches and the S&OP plan.

Runs ``firmware_sim``'s world (the same model behind its Modbus/OPC UA/MES servers) in
simulated time, and hands its samples over in the contract's shapes, scaled the way the demo
edge configuration scales them (load cells to pieces), so live analytics and alert rules can
be run over days of plant in seconds. With ``mes_counts`` (the default) the MES's good count
per line and SKU is polled every minute as well, as an edge polling ``/api/v1/counts`` would
announce it (``mes_count_specs``): a line that makes several SKUs is then counted per SKU.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import AlertEvent
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rules import load_rules
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import Monitor
from cloud_service.live.settings import LiveSettings
from cloud_service.plans.codec import parse_plan_toml
from cloud_service.plans.model import PlanBook, ScheduledReceipt
from firmware_sim.core.inventory import StockPoint
from firmware_sim.core.sensors import Sample
from firmware_sim.core.world import World
from firmware_sim.plan_export import world_plan_toml
from firmware_sim.scenario import default_scenario
from firmware_sim.scenario.model import FaultKind, Scenario, SensorType
from shared.messages import Birth, Quality, Reading, SignalKind, SignalSpec, TelemetryBatch

START_MS = 1_767_744_000_000  # 2026-01-07 00:00 UTC, a Wednesday: every fault hits a workday
HOUR_MS = 3_600_000


def scenario_with(*kinds: FaultKind) -> Scenario:
    """The default scenario with only the scheduled faults of ``kinds`` (no random ones)."""
    base = default_scenario()
    faults = tuple(f for f in base.faults if f.kind in kinds)
    return dataclasses.replace(base, faults=faults, random_faults=())


def signal_specs(scenario: Scenario) -> dict[str, SignalSpec]:
    out = {}
    for s in scenario.signals:
        if s.type in (SensorType.LEVEL, SensorType.LOAD_CELL):
            kind = SignalKind.STOCK_LEVEL
        elif s.type is SensorType.COUNTER:
            kind = SignalKind.PRODUCTION_COUNT
        else:
            kind = SignalKind.SENSOR  # scrap counts, temperature, vibration
        out[s.id] = SignalSpec(
            id=s.id,
            kind=kind,
            unit="pcs" if kind is not SignalKind.SENSOR else s.unit,
            sku=s.sku,
            location=s.warehouse,
            # output is the good count: the scrap counter is announced without its line
            line=s.line if s.counter != "scrap" else None,
            period_s=max(s.period_s, 60.0),
        )
    return out


MES_PERIOD_MS = 60_000


def mes_count_specs(scenario: Scenario) -> list[SignalSpec]:
    """The MES's good count per line and SKU (``GET /api/v1/counts?line=...``), as an edge
    polling it announces them: one counter per SKU, for every line that makes several."""
    return [
        SignalSpec(
            id=f"mes.{line.id}.{p.sku}.good",
            kind=SignalKind.PRODUCTION_COUNT,
            unit="pcs",
            sku=p.sku,
            location=line.warehouse,
            line=line.id,
            period_s=MES_PERIOD_MS / 1000,
        )
        for line in scenario.lines
        if len(line.products) > 1
        for p in line.products
    ]


def gateway_of(scenario: Scenario) -> dict[str, str]:
    devices = {name: d.gateway for d in scenario.mqtt_devices for name in d.signals}
    return {s.id: devices.get(s.id, scenario.gateway) for s in scenario.signals}


def births(scenario: Scenario, *, mes_counts: bool = True) -> list[Birth]:
    specs, where = signal_specs(scenario), gateway_of(scenario)
    if mes_counts:
        for spec in mes_count_specs(scenario):
            specs[spec.id] = spec
            where[spec.id] = scenario.gateway
    return [
        Birth(
            gateway=gw,
            site=scenario.site,
            boot="b1",
            agent_version="test",
            config_hash="x",
            started_ms=START_MS,
            signals=[specs[s] for s in specs if where[s] == gw],
        )
        for gw in sorted(set(where.values()))
    ]


def plan_book(world: World, days: int) -> PlanBook:
    """The simulator's S&OP plan as the cloud would hold it (``firmware_sim.plan_export``)."""
    return parse_plan_toml(world_plan_toml(world, days), "simulator plan")


class OrderingWorld(World):
    """The world, recording the replenishment orders it places (what an ERP would tell the
    cloud as open orders): the same draws in the same order as ``World._reorder``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.orders_placed: list[tuple[str, str, int, int]] = []  # warehouse, sku, due, qty
        super().__init__(*args, **kwargs)

    def _reorder(self, t: int, point: StockPoint) -> None:
        for quantity in point.reorder():
            due = t + point.lead_time_ms()
            self.orders_placed.append((point.warehouse, point.sku, due, quantity))
            self.queue.schedule(due, partial(self._on_receipt, point, quantity))

    def open_orders(self, site: str, now_ms: int) -> tuple[ScheduledReceipt, ...]:
        return tuple(
            ScheduledReceipt(site, sku, due, float(q), wh)
            for wh, sku, due, q in self.orders_placed
            if due > now_ms
        )


@dataclass
class SimFeed:
    """Steps the world and returns each step's samples as one batch per gateway."""

    scenario: Scenario
    seed: int = 1
    step_ms: int = 10 * 60_000
    mes_counts: bool = True  # the MES's per-SKU good counts, polled every minute
    world: OrderingWorld = field(init=False)
    _samples: list[Sample] = field(default_factory=list)
    _seq: dict[str, int] = field(default_factory=dict)
    _mes_next: int = START_MS

    def __post_init__(self) -> None:
        self.world = OrderingWorld(
            self.scenario, seed=self.seed, start_ms=START_MS, sample_floor_s=60
        )
        self.world.add_listener(self._samples.append)
        self._where = gateway_of(self.scenario)
        self._spec = {s.id: s for s in self.scenario.signals}

    def _value(self, s: Sample) -> float | None:
        spec = self._spec[s.signal]
        if s.value is None:
            return None
        if spec.type is SensorType.LOAD_CELL:  # the edge's linear scaling to pieces
            sku = next(k for k in self.scenario.skus() if k.sku == spec.sku)
            return (s.value - spec.offset) / sku.unit_weight_kg
        return s.value

    def _poll_mes(self, until: int, out: list[Reading]) -> None:
        """Every minute up to ``until``: advance the world there and read its per-SKU counts."""
        t = self._mes_next
        while t <= until:
            self.world.advance_to(t)
            for line in self.scenario.lines:
                if len(line.products) > 1:
                    counts = self.world.lines[line.id].good_by_sku
                    out.extend(
                        Reading(f"mes.{line.id}.{sku}.good", t, float(n), int(Quality.GOOD))
                        for sku, n in counts.items()
                    )
            t += MES_PERIOD_MS
        self._mes_next = t

    def run(self, hours: float) -> Iterator[tuple[int, list[TelemetryBatch]]]:
        end = START_MS + int(hours * HOUR_MS)
        t = START_MS
        while t < end:
            t += self.step_ms
            by_gw: dict[str, list[Reading]] = {}
            if self.mes_counts:
                self._poll_mes(t, by_gw.setdefault(self.scenario.gateway, []))
            self.world.advance_to(t)
            for s in self._samples:
                by_gw.setdefault(self._where[s.signal], []).append(
                    Reading(s.signal, s.ts, self._value(s), int(s.quality))
                )
            self._samples.clear()
            batches = []
            for gw, readings in sorted(by_gw.items()):
                seq = self._seq[gw] = self._seq.get(gw, 0) + 1
                batches.append(TelemetryBatch(gateway=gw, boot="b1", seq=seq, readings=readings))
            yield t, batches


@dataclass
class LivePlant:
    """The plant's feed through live analytics, the rules and the alert lifecycle (a real
    SQLite alert store), the ERP's open orders synced into the plan book every step."""

    feed: SimFeed
    book: PlanBook
    live: LiveAnalytics
    monitor: Monitor
    engine: AsyncEngine

    @classmethod
    async def open(
        cls,
        scenario: Scenario,
        path: Path,
        *,
        days: int,
        mes: bool = True,
        seed: int = 1,
        rules: Path | None = None,
        settings: LiveSettings | None = None,
    ) -> LivePlant:
        feed = SimFeed(scenario, seed=seed, mes_counts=mes)
        book = plan_book(feed.world, days=days)
        live = LiveAnalytics(settings, plans=book)
        for birth in births(scenario, mes_counts=mes):
            live.on_birth(scenario.site, birth)
        engine = create_sqlite_engine(path, "NORMAL")
        await create_tables(engine)
        alerts = AlertSettings()
        router = Router(alerts, OutboxPolicy.from_settings(alerts.outbox))
        service = await AlertService.open(SqlAlertStore(engine), router)
        monitor = Monitor(live, service, load_rules(rules) if rules else load_rules())
        return cls(feed, book, live, monitor, engine)

    async def steps(self, hours: float) -> AsyncIterator[tuple[int, list[AlertEvent]]]:
        """Each step's time and the alert events it raised."""
        site = self.feed.scenario.site
        for now, batches in self.feed.run(hours):
            for batch in batches:
                self.live.on_batch(site, batch.gateway, batch, now_ms=now)
            # the ERP's open orders, synced every step (as a PUT /api/v1/plans would)
            self.live.set_plans(replace(self.book, receipts=self.feed.world.open_orders(site, now)))
            yield now, await self.monitor.step(now)

    async def close(self) -> None:
        await self.engine.dispose()
