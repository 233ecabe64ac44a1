"""The default scenario with a stuck sensor, a line stoppage and a demand surge, through live
analytics, the default rules and the alert lifecycle (a real SQLite alert store).

Eleven days of plant in simulated time (``sim_feed``): the faults are the scenario's own
(``flatline`` of wh2.a113.level at 30 h for 3 h, ``line_stoppage`` of line3 at 150 h for 5 h,
``demand_surge`` of A-113 at 200 h for 48 h); the run starts on a Wednesday so each hits a
working day. Every alert raised must be explained by the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from sim_feed import HOUR_MS, START_MS, SimFeed, births, plan_book, scenario_with

from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import EventKind
from cloud_service.alerts.routing import Router
from cloud_service.alerts.rules import load_rules
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import Monitor
from firmware_sim.scenario.model import FaultKind

Raised = tuple[float, str, str]  # (hours into the run, rule, subject)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Raised], dict[str, float]]:
    return asyncio.run(_run(tmp_path_factory.mktemp("scenario") / "alerts.sqlite"))


@pytest.fixture
def raised(run: tuple[list[Raised], dict[str, float]]) -> list[Raised]:
    return run[0]


async def _run(path: Path) -> tuple[list[Raised], dict[str, float]]:
    scenario = scenario_with(FaultKind.FLATLINE, FaultKind.LINE_STOPPAGE, FaultKind.DEMAND_SURGE)
    feed = SimFeed(scenario)
    book = plan_book(feed.world, days=14)
    live = LiveAnalytics(plans=book)
    for birth in births(scenario):
        live.on_birth(scenario.site, birth)
    engine = create_sqlite_engine(path, "NORMAL")
    await create_tables(engine)
    settings = AlertSettings()
    router = Router(settings, OutboxPolicy.from_settings(settings.outbox))
    service = await AlertService.open(SqlAlertStore(engine), router)
    monitor = Monitor(live, service, load_rules())
    out: list[Raised] = []
    ratios: dict[str, float] = {}
    try:
        for now, batches in feed.run(260):
            for batch in batches:
                live.on_batch(scenario.site, batch.gateway, batch, now_ms=now)
            # the ERP's open orders, synced every step (as a PUT /api/v1/plans would)
            live.set_plans(replace(book, receipts=feed.world.open_orders(scenario.site, now)))
            if now == START_MS + 175 * HOUR_MS:  # a Thursday, no fault running
                ratios = {f.sku: f.actual / f.planned for f in live.consumption_figures}
            for e in await monitor.step(now):
                if e.kind is EventKind.RAISED:
                    out.append(((now - START_MS) / HOUR_MS, e.alert.key.rule, e.alert.key.subject))
    finally:
        await engine.dispose()
    return out, ratios


def _one(raised: list[Raised], rule: str, subject: str) -> float:
    hits = [h for h, r, s in raised if r == rule and s == subject]
    assert len(hits) == 1, f"{rule} on {subject}: {hits} in {raised}"
    return hits[0]


def test_the_stuck_sensor_raises_one_alert_within_its_window(raised: list[Raised]) -> None:
    assert 30.0 < _one(raised, "sensor-stuck", "wh2.a113.level") <= 30.5  # 15 min threshold


def test_the_line_stoppage_raises_one_production_alert(raised: list[Raised]) -> None:
    assert 150.0 < _one(raised, "production-behind-plan", "line3") <= 151.5  # 45 min on-delay


def test_the_demand_surge_raises_a_stockout_warning_before_the_stockout(
    raised: list[Raised],
) -> None:
    # ground truth: A-113 first runs out at 225.4 h, 25 h into the surge
    assert 200.0 < _one(raised, "stockout-risk", "W2:A-113") < 225.4


def test_no_alert_fires_on_signals_without_a_fault(raised: list[Raised]) -> None:
    """Noise, receipts, shift changes and weekends raise nothing on the signals."""
    signal_rules = {"sensor-stuck", "signal-anomaly", "no-data"}
    assert [r for r in raised if r[1] in signal_rules] == [
        r for r in raised if r[1:] == ("sensor-stuck", "wh2.a113.level")
    ]


@pytest.mark.xfail(
    strict=True,
    reason="one more alert: stockout-risk on C-310 at 145 h, after a lumpy order left 27 units, "
    "less than its expected demand over the lead time (45), with the open order due in 88 h. "
    "A real risk by the information at hand, which the simulated demand happened not to realise "
    "(no C-310 stockout in the ground truth)",
)
def test_exactly_three_alerts(raised: list[Raised]) -> None:
    assert len(raised) == 3, raised


def test_consumption_of_a_line_fed_stock_is_recovered_net_of_output(
    run: tuple[list[Raised], dict[str, float]],
) -> None:
    """E-500 is refilled only by line1 (its single product): its level alone shows half its
    demand; with the line's counter netted in, consumption matches the demand plan."""
    assert 0.8 < run[1]["E-500"] < 1.3
