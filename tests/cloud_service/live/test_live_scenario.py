"""The default scenario with a stuck sensor, a line stoppage and a demand surge, through live
analytics, the default rules and the alert lifecycle (a real SQLite alert store).

Eleven days of plant in simulated time (``sim_feed``): the faults are the scenario's own
(``flatline`` of wh2.a113.level at 30 h for 3 h, ``line_stoppage`` of line3 at 150 h for 5 h,
``demand_surge`` of A-113 at 200 h for 48 h); the run starts on a Wednesday so each hits a
working day. The plant runs twice: as its PLCs show it, and with its MES's good counts per
line and SKU polled too. Each fault must raise its alert once, and every other alert must be
a risk the simulator's ground truth bears out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sim_feed import HOUR_MS, START_MS, LivePlant, SimFeed, gateway_of, scenario_with

from cloud_service.alerts.explain import signal_subject
from cloud_service.alerts.records import EventKind
from cloud_service.analytics.plan import mix_drift
from cloud_service.plans.model import PlanBook
from firmware_sim.scenario.model import FaultKind

Raised = tuple[float, str, str]  # (hours into the run, rule, subject)
#: The stuck level sensor's alert subject: the signal on its gateway
LEVEL = signal_subject(gateway_of(scenario_with())["wh2.a113.level"], "wh2.a113.level")


@dataclass(frozen=True)
class TrueRisk:
    """The plant's truth when a stockout-risk alert is raised: the real stock, the SKU's true
    mean demand (the scenario's), when the next open order really lands, and what the plan
    has the lines make of it until then."""

    stock: int
    mean_per_h: float
    window_h: float  # to the next receipt; the lead time when nothing is on order
    planned_output: float  # of this SKU, by the plan, within the window

    @property
    def expected_shortfall(self) -> float:
        """True mean demand over the window less the stock and the planned output: > 0 means
        that on the scenario's own demand law the stock runs out before it is refilled."""
        return self.mean_per_h * self.window_h - self.stock - self.planned_output


@dataclass
class Run:
    raised: list[Raised]
    ratios: dict[str, float]  # consumption / demand plan per SKU, at 175 h (see _run)
    truth: dict[Raised, TrueRisk]  # for every stockout-risk alert raised
    mix_drift: dict[str, float | None]  # per line, at 175 h
    used: dict[str, float] = field(default_factory=dict)  # consumption seen, the 24 h to 175 h
    true_used: dict[str, float] = field(default_factory=dict)  # the plant's own demand
    true_mix_drift: float | None = None  # line3's, from the plant's own output and the plan
    lots: dict[str, int] = field(default_factory=dict)  # per SKU, its line's lot size


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The plant as its PLCs show it: levels, load cells, a good-pieces counter per line."""
    return asyncio.run(_run(tmp_path_factory.mktemp("scenario") / "alerts.sqlite", mes=False))


@pytest.fixture(scope="module")
def run_mes(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The same plant with its MES's good counts per line and SKU polled too."""
    return asyncio.run(_run(tmp_path_factory.mktemp("scenario") / "alerts.sqlite", mes=True))


@pytest.fixture
def raised(run: Run) -> list[Raised]:
    return run.raised


def _true_risk(feed: SimFeed, book: PlanBook, subject: str, now: int) -> TrueRisk:
    warehouse, sku = subject.split(":")
    point = feed.world.stock[(warehouse, sku)]
    due = [d for wh, s, d, _ in feed.world.orders_placed if (wh, s) == (warehouse, sku)]
    ahead = [d for d in due if d > now]
    policy = book.policy(feed.scenario.site, sku, warehouse)
    assert policy is not None
    end = min(ahead) if ahead else now + int(policy.lead_time_h * HOUR_MS)
    made = sum(
        t.quantity * max(min(t.end_ms, end) - max(t.start_ms, now), 0) / (t.end_ms - t.start_ms)
        for t in book.production
        if t.sku == sku
    )
    return TrueRisk(point.stock, point.spec.demand.mean_per_day / 24, (end - now) / HOUR_MS, made)


async def _run(path: Path, *, mes: bool) -> Run:
    scenario = scenario_with(FaultKind.FLATLINE, FaultKind.LINE_STOPPAGE, FaultKind.DEMAND_SURGE)
    plant = await LivePlant.open(scenario, path, days=14, mes=mes)
    feed, book, live = plant.feed, plant.book, plant.live
    result = Run([], {}, {}, {})
    demanded: dict[str, int] = {}
    made_by_6: dict[str, int] = {}
    result.lots = {p.sku: ln.lot_size for ln in scenario.lines for p in ln.products}
    try:
        async for now, events in plant.steps(260):
            if now == START_MS + 151 * HOUR_MS:
                demanded = {sku: p.demanded for (_, sku), p in feed.world.stock.items()}
            if now == START_MS + 174 * HOUR_MS:  # Wednesday 06:00: the day's plan starts
                made_by_6 = dict(feed.world.lines["line3"].good_by_sku)
            # Wednesday 07:00; the 24 h before it hold the end of the line3 stoppage, which
            # changes what the line made, not what was consumed
            if now == START_MS + 175 * HOUR_MS:
                result.ratios = {f.sku: f.actual / f.planned for f in live.consumption_figures}
                result.mix_drift = {f.line: f.mix_drift for f in live.production_figures}
                result.used = {f.sku: f.actual for f in live.consumption_figures}
                made = {
                    k: n - made_by_6[k] for k, n in feed.world.lines["line3"].good_by_sku.items()
                }
                due = {
                    t.sku or "": t.quantity / 16  # the first of the day's 16 planned hours
                    for t in book.production_at(scenario.site, "line3", now)
                }
                result.true_mix_drift = mix_drift(list(made.values()), [due[k] for k in made])
                result.true_used = {
                    f.sku: feed.world.stock[f.location or "", f.sku].demanded - demanded[f.sku]
                    for f in live.consumption_figures
                }
            for e in events:
                if e.kind is EventKind.RAISED:
                    key = e.alert.key
                    raised = ((now - START_MS) / HOUR_MS, key.rule, key.subject)
                    result.raised.append(raised)
                    if key.rule == "stockout-risk":
                        result.truth[raised] = _true_risk(feed, book, key.subject, now)
    finally:
        await plant.close()
    return result


def _one(raised: list[Raised], rule: str, subject: str) -> float:
    hits = [h for h, r, s in raised if r == rule and s == subject]
    assert len(hits) == 1, f"{rule} on {subject}: {hits} in {raised}"
    return hits[0]


def test_the_stuck_sensor_raises_one_alert_within_its_window(raised: list[Raised]) -> None:
    assert 30.0 < _one(raised, "sensor-stuck", LEVEL) <= 30.5  # 15 min threshold


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
        r for r in raised if r[1:] == ("sensor-stuck", LEVEL)
    ]


def test_no_other_alert_unless_the_plant_truly_was_at_risk(run: Run) -> None:
    """Beyond the three faults' alerts, only a stockout risk the plant's truth bears out.

    With seed 1 there is one: C-310 at 145 h, right after a lumpy order left 27 units. Its
    replenishment is under-set in the scenario itself (reorder point 40 against a true mean
    demand of 45 over its 72 h lead time), the open order lands 93 h later, and on the
    scenario's own demand law (15 a day) 58 units are expected by then: a warning a planner
    wants. The simulated demand happened to pause for those days, so no stockout followed.
    An alert on noise, on a receipt or on a sensor, or a stockout warning that the true
    demand does not bear out, fails here.
    """
    faults = {
        ("sensor-stuck", LEVEL),
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
    others = [r for r in run.raised if r[2] not in {LEVEL, "line3", "W2:A-113"}]
    assert [r[1:] for r in others] == [("stockout-risk", "W1:C-310")]
    assert 144.0 < others[0][0] < 147.0


def test_consumption_of_a_line_fed_stock_is_recovered_net_of_output(run: Run) -> None:
    """E-500 is refilled only by line1 (its single product): its level alone shows half its
    demand; with the line's counter netted in, consumption matches the demand plan."""
    assert 0.8 < run.ratios["E-500"] < 1.3


# -- the same plant with its MES's per-SKU counts -----------------------------------------------


def test_with_per_sku_counts_the_surge_raises_a_demand_alert_and_an_earlier_warning(
    run: Run, run_mes: Run
) -> None:
    """line3 refills A-113 and B-220 from one PLC counter; with the MES's count per SKU their
    consumption is recovered net of output, so the surge itself is seen (demand-surge, 6 h in)
    and the stockout warned half a day ahead instead of one hour."""
    raised = run_mes.raised
    assert 200.0 < _one(raised, "demand-surge", "W2:A-113") <= 212.0
    assert 200.0 < _one(raised, "stockout-risk", "W2:A-113") <= 225.4 - 10.0
    assert 30.0 < _one(raised, "sensor-stuck", LEVEL) <= 30.5
    # the line's PLC counter speaks for line3, its MES counts only add the mix: one alert
    assert 150.0 < _one(raised, "production-behind-plan", "line3") <= 151.5
    # its mix drift is the plant's own (made since 06:00 against the plan's first hour)
    drift = run_mes.mix_drift["line3"]
    assert drift is not None
    assert run_mes.true_mix_drift is not None
    assert drift == pytest.approx(run_mes.true_mix_drift, abs=0.05)
    assert run.mix_drift["line3"] is None  # one PLC counter: no mix to see


def test_with_per_sku_counts_consumption_matches_the_plants_own(run: Run, run_mes: Run) -> None:
    """In the 24 h to 175 h A-113 truly sold 1.74 times its plan: the levels alone (the line's
    output unknown) see 0.77 times the plan, 0.44 of the truth; netted with the MES's count
    per SKU, the truth, give or take one lot: pieces counted but still waiting on the line
    for their lot (60 on line3, 200 on line1) to fill."""
    for sku in ("A-113", "B-220", "E-500"):
        lot = run_mes.lots[sku]
        assert run_mes.used[sku] == pytest.approx(run_mes.true_used[sku], abs=lot), sku
    assert run.used["A-113"] < 0.6 * run.true_used["A-113"]


def test_with_per_sku_counts_every_other_alert_is_a_risk_the_plant_bore_out(
    run_mes: Run,
) -> None:
    """More is seen, so more is warned: B-220 at 73 h (its erratic demand had just emptied
    it at 64 h, with 360 left against 387 expected before its order lands) and C-310 as in
    the PLC-only plant. Nothing on noise, receipts or the line's shift pattern."""
    faults = {
        ("sensor-stuck", LEVEL),
        ("production-behind-plan", "line3"),
        ("stockout-risk", "W2:A-113"),
        ("demand-surge", "W2:A-113"),
    }
    others = [r for r in run_mes.raised if r[1:] not in faults]
    assert {r[1:] for r in others} == {
        ("stockout-risk", "W2:B-220"),
        ("stockout-risk", "W1:C-310"),
    }
    for r in others:
        assert run_mes.truth[r].expected_shortfall > 0, r
