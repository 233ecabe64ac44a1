"""The default scenario with a stuck sensor, a line stoppage and a demand surge, through live
analytics, the default rules and the alert lifecycle (a real SQLite alert store).

Eleven days of plant in simulated time (``sim_feed``): the faults are the scenario's own
(``flatline`` of wh2.a113.level at 30 h for 3 h, ``line_stoppage`` of line3 at 150 h for 5 h,
``demand_surge`` of A-113 at 200 h for 48 h); the run starts on a Wednesday so each hits a
working day. Every alert raised must be explained by the simulator's ground truth.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
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


@dataclass(frozen=True)
class TrueRisk:
    """The plant's truth when a stockout-risk alert is raised: the real stock, the SKU's true
    mean demand (the scenario's), and when the next open order really lands."""

    stock: int
    mean_per_h: float
    next_receipt_h: float  # hours from the alert; inf when nothing is on order

    @property
    def expected_shortfall(self) -> float:
        """True mean demand until the next receipt, less the stock: > 0 means that on the
        scenario's own demand law the stock is expected to run out before it is refilled."""
        return self.mean_per_h * self.next_receipt_h - self.stock


@dataclass
class Run:
    raised: list[Raised]
    ratios: dict[str, float]  # consumption / demand plan per SKU on a quiet Thursday
    truth: dict[Raised, TrueRisk]  # for every stockout-risk alert raised


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return asyncio.run(_run(tmp_path_factory.mktemp("scenario") / "alerts.sqlite"))


@pytest.fixture
def raised(run: Run) -> list[Raised]:
    return run.raised


def _true_risk(feed: SimFeed, subject: str, now: int) -> TrueRisk:
    warehouse, sku = subject.split(":")
    point = feed.world.stock[(warehouse, sku)]
    due = [d for wh, s, d, _ in feed.world.orders_placed if (wh, s) == (warehouse, sku)]
    ahead = [d for d in due if d > now]
    return TrueRisk(
        stock=point.stock,
        mean_per_h=point.spec.demand.mean_per_day / 24,
        next_receipt_h=(min(ahead) - now) / HOUR_MS if ahead else float("inf"),
    )


async def _run(path: Path) -> Run:
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
    truth: dict[Raised, TrueRisk] = {}
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
                    key = e.alert.key
                    out.append(((now - START_MS) / HOUR_MS, key.rule, key.subject))
                    if key.rule == "stockout-risk":
                        truth[out[-1]] = _true_risk(feed, key.subject, now)
    finally:
        await engine.dispose()
    return Run(out, ratios, truth)


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


def test_no_other_alert_unless_the_plant_truly_was_at_risk(run: Run) -> None:
    """Beyond the three faults' alerts, only a stockout risk the plant's truth bears out.

    With seed 1 there is one: C-310 at 145 h, right after a lumpy order left 27 units. Its
    replenishment is under-set in the scenario itself (reorder point 40 against a true mean
    demand of 45 over its 72 h lead time), the open order lands 92 h later, and on the
    scenario's own demand law (15 a day) 58 units are expected by then: a warning a planner
    wants. The simulated demand happened to pause for those days, so no stockout followed.
    An alert on noise, on a receipt or on a sensor, or a stockout warning that the true
    demand does not bear out, fails here.
    """
    faults = {
        ("sensor-stuck", "wh2.a113.level"),
        ("production-behind-plan", "line3"),
        ("stockout-risk", "W2:A-113"),
    }
    others = [r for r in run.raised if r[1:] not in faults]
    for r in others:
        assert r[1] == "stockout-risk", f"an alert no fault explains: {r}"
        truth = run.truth[r]
        assert truth.expected_shortfall > 0, f"{r}: the plant was not at risk ({truth})"
    assert len(run.raised) == len(faults) + len(others)  # each fault's alert once (tests above)


def test_the_extra_stockout_warning_is_c310s_under_set_reorder_point(run: Run) -> None:
    """Pins the one extra alert of seed 1 (above), so a change that adds or drops alerts in
    this scenario is seen and its reason written down."""
    others = [r for r in run.raised if r[2] not in {"wh2.a113.level", "line3", "W2:A-113"}]
    assert [r[1:] for r in others] == [("stockout-risk", "W1:C-310")]
    assert 144.0 < others[0][0] < 147.0


def test_consumption_of_a_line_fed_stock_is_recovered_net_of_output(run: Run) -> None:
    """E-500 is refilled only by line1 (its single product): its level alone shows half its
    demand; with the line's counter netted in, consumption matches the demand plan."""
    assert 0.8 < run.ratios["E-500"] < 1.3
