"""The state rebuilt from InfluxDB at start-up is the state live processing builds.

The same readings go once through ``on_batch`` (live) and once through InfluxDB and
:func:`rebuild` (a restart): the trails, and every figure computed from them, must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import pytest

from cloud_service.alerts.inputs import ConsumptionFigures, ProductionFigures, StockFigures
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history import rebuild
from cloud_service.live.outputs import OutputWriter
from cloud_service.live.settings import LiveSettings
from cloud_service.live.trails import BucketTrail, CounterTrail
from cloud_service.plans.model import DemandTarget, PlanBook, ProductionTarget, SkuPolicy
from cloud_service.storage.influx import InfluxStore
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch

pytestmark = pytest.mark.integration

H = 3_600_000
M = 60_000
T0 = 1_767_744_000_000  # a Wednesday, 00:00 UTC
SITE, GW = "p1", "g1"
Figures = StockFigures | ConsumptionFigures | ProductionFigures


@pytest.fixture
def store(influx_store: InfluxStore) -> InfluxStore:
    return influx_store


def _stock_and_line() -> LiveAnalytics:
    """A stock of A that line L1 (making A alone) refills, with plans for both."""
    live = LiveAnalytics()
    live.on_birth(
        SITE,
        Birth(
            gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
            started_ms=T0, signals=[
                SignalSpec(id="lvl", kind=SignalKind.STOCK_LEVEL, sku="A", location="W1",
                           period_s=600.0),
                SignalSpec(id="cnt", kind=SignalKind.PRODUCTION_COUNT, line="L1", period_s=600.0),
            ],
        ),
    )  # fmt: skip
    end = T0 + 30 * 24 * H
    live.set_plans(
        PlanBook(
            skus=(SkuPolicy(SITE, "A", "W1", lead_time_h=48.0, safety_stock=100.0),),
            production=(ProductionTarget(SITE, "L1", T0, end, 30.0 * 30 * 24, sku="A"),),
            demand=(DemandTarget(SITE, "A", T0, end, 40.0 * 30 * 24, location="W1"),),
        )
    )
    return live


def _level_only() -> LiveAnalytics:
    live = LiveAnalytics()
    live.on_birth(
        SITE,
        Birth(
            gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
            started_ms=T0,
            signals=[SignalSpec(id="lvl", kind=SignalKind.STOCK_LEVEL, sku="A", period_s=600.0)],
        ),
    )  # fmt: skip
    return live


def _line(measurement: str, tags: str, value: float, t: int) -> str:
    return f"{measurement},gateway={GW},{tags}signal={{}},site={SITE} value={value} {t}"


def _close(live: Sequence[Figures], rebuilt: Sequence[Figures]) -> None:
    assert len(rebuilt) == len(live)
    for a, b in zip(live, rebuilt, strict=True):
        for (name, x), y in zip(asdict(a).items(), asdict(b).values(), strict=True):
            if isinstance(x, float):
                assert y == pytest.approx(x, rel=1e-6, abs=1e-6), name
            else:
                assert y == x, name


def _same_trail(live: BucketTrail, rebuilt: BucketTrail) -> None:
    lts, lv = live.series()
    rts, rv = rebuilt.series()
    assert rts.tolist() == lts.tolist()
    assert rv == pytest.approx(lv)


async def test_a_rebuilt_stock_and_its_line_give_the_live_figures(store: InfluxStore) -> None:
    """Ten days of a stock refilled by its line (30/h made, 40/h used), restarted mid-hour: the
    counter's hourly trail nets the output in over the whole stock history, not its 48 h of
    minutes, and every stamp is the one live processing gives."""
    now = T0 + 10 * 24 * H + 30 * M
    ts = np.arange(T0, now, 10 * M)
    hours = (ts - T0) / H
    made = np.floor(30.0 * hours)
    level = 20_000 - 40.0 * hours + made
    live = _stock_and_line()
    for t, lv, c in zip(ts.tolist(), level.tolist(), made.tolist(), strict=True):
        batch = [Reading("lvl", t, lv), Reading("cnt", t, c)]
        live.on_batch(SITE, GW, TelemetryBatch(gateway=GW, boot="b", seq=1, readings=batch), t)
    await store.write(
        [
            line
            for t, lv, c in zip(ts.tolist(), level.tolist(), made.tolist(), strict=True)
            for line in (
                _line("stock_level", "location=W1,sku=A,", lv, t).format("lvl"),
                _line("production_count", "line=L1,", c, t).format("cnt"),
            )
        ],
        precision="ms",
    )
    rebuilt = _stock_and_line()
    report = await rebuild(rebuilt, store, now_ms=now)

    assert live.refresh(now)
    assert rebuilt.refresh(now)
    [(_, d_live)] = live.depletion_results
    [(_, d_rebuilt)] = rebuilt.depletion_results
    assert d_live.rate_per_hour == pytest.approx(40.0, rel=0.01)  # the truth, netted
    assert d_rebuilt.rate_per_hour == pytest.approx(d_live.rate_per_hour, rel=1e-9)
    # stock, stockout P10/P50/P90, latest order date and quantity
    _close(live.stock_figures, rebuilt.stock_figures)
    # consumption over the window, buffer used, excess in standard deviations (demand surge)
    [c_live] = live.consumption_figures
    assert c_live.excess_sigma is not None
    _close(live.consumption_figures, rebuilt.consumption_figures)
    _close(live.production_figures, rebuilt.production_figures)

    lvl, cnt = 0, 1
    _same_trail(live._stock[lvl], rebuilt._stock[lvl])
    live_counter, rebuilt_counter = live._counter[cnt], rebuilt._counter[cnt]
    assert isinstance(rebuilt_counter, CounterTrail)
    _same_trail(live_counter, rebuilt_counter)
    _same_trail(live_counter.hourly, rebuilt_counter.hourly)
    assert rebuilt_counter.hourly.series()[0].size == 241  # all ten days and the hour begun
    assert report.trail_points == 241 + 241 + 48 * 6  # stock, counter hours, its minutes


@pytest.mark.parametrize(
    ("old", "new"), [("location=W1,", ""), ("", "location=W1,")], ids=["removed", "added"]
)
async def test_a_signal_whose_tags_changed_comes_back_whole(
    store: InfluxStore, old: str, new: str
) -> None:
    """Ten days of a level every 10 min whose ``location`` tag went (or came) half-way, in the
    middle of an hour: InfluxDB answers one group per tag set, the newer first or last; the
    trail keeps every hour, the hour of the change with its later reading, as live."""
    now = T0 + 10 * 24 * H
    ts = np.arange(T0, now, 10 * M)
    change = T0 + 120 * H + 30 * M
    live, rebuilt = _level_only(), _level_only()
    lines = []
    for k, t in enumerate(ts.tolist()):
        value = 50_000.0 - k
        live.on_batch(
            SITE, GW, TelemetryBatch(gateway=GW, boot="b", seq=1,
                                     readings=[Reading("lvl", t, value)]), t,
        )  # fmt: skip
        tags = old if t < change else new
        lines.append(_line("stock_level", f"{tags}sku=A,", value, t).format("lvl"))
    await store.write(lines, precision="ms")

    report = await rebuild(rebuilt, store, now_ms=now)
    assert report.trail_points == 240  # what the trail took in, not what was read
    rts, rv = rebuilt._stock[0].series()
    assert rts.size == 240
    _same_trail(live._stock[0], rebuilt._stock[0])
    assert rv[120] == 50_000.0 - (120 * 6 + 5)  # the hour of the change: its last reading


def _sensor() -> LiveAnalytics:
    # a budget of 6 h of its points: the replay leaves out the rest at 10-12 h (below)
    live = LiveAnalytics(LiveSettings(rebuild_max_points=360))
    live.on_birth(
        SITE,
        Birth(
            gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
            started_ms=T0,
            signals=[SignalSpec(id="x", kind=SignalKind.SENSOR, period_s=60.0)],
        ),
    )  # fmt: skip
    return live


def _stuck_from(live: LiveAnalytics, ts: np.ndarray, val: np.ndarray) -> float | None:
    for t, v in zip(ts.tolist(), val.tolist(), strict=True):
        batch = TelemetryBatch(gateway=GW, boot="b", seq=1, readings=[Reading("x", t, v)])
        live.on_batch(SITE, GW, batch, t)
        if any(f.stuck_since_ms is not None for f in live.inputs(t, silence=[]).signals):
            return (t - T0) / H
    return None


async def test_a_restart_keeps_what_the_stuck_rule_learned(store: InfluxStore) -> None:
    """A sensor that habitually rests flat for 2 h (10-12 h), then sticks for good at 41 h,
    with a restart at 40 h: the baseline written with the outputs comes back, so the fault is
    seen when it would have been without the restart (not a day of warm-up later, and not
    sooner: the 2 h rest is still known, though older than the 6 h of replayed points the
    point budget leaves it)."""
    rng = np.random.default_rng(7)
    ts = T0 + np.arange(0, 60 * H, M)
    val = 20 + rng.normal(0, 1, ts.size).round(3)
    hours = (ts - T0) / H
    for start, end in ((10, 12), (41, 60)):
        sel = (hours >= start) & (hours < end)
        val[sel] = val[np.flatnonzero(sel)[0] - 1]
    continuous = _stuck_from(_sensor(), ts, val)
    assert continuous is not None
    assert 44 < continuous < 46.5  # twice the longest rest after the fault began

    restart = T0 + 40 * H
    before = ts < restart
    first_life = _sensor()
    assert _stuck_from(first_life, ts[before], val[before]) is None
    await OutputWriter(first_life, store).flush(int(ts[before][-1]))
    await store.write(
        [
            _line("sensor", "", v, t).format("x")
            for t, v in zip(ts[before].tolist(), val[before].tolist(), strict=True)
        ],
        precision="ms",
    )
    second_life = _sensor()
    await rebuild(second_life, store, now_ms=restart)
    [(_, longest, since)] = second_life.flat_baselines()
    assert (longest, since) == first_life.flat_baselines()[0][1:]
    assert _stuck_from(second_life, ts[~before], val[~before]) == pytest.approx(continuous)
