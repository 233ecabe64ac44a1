"""Live analytics rebuilt from a real influxd at start-up, and its figures written back.

History is written the way ingest writes readings (measurement = signal kind, the catalog's
tags), then :func:`rebuild` must put it into the trails and the anomaly engine, so a restart
forecasts at once instead of after days; the write-back must land in InfluxDB with the
readings' tags.
"""

from __future__ import annotations

import numpy as np
import pytest

from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history import rebuild
from cloud_service.live.outputs import OutputWriter
from cloud_service.live.settings import LiveSettings
from cloud_service.live.trails import CounterTrail
from cloud_service.plans.model import PlanBook, ProductionTarget, SkuPolicy
from cloud_service.storage.influx import InfluxStore
from shared.messages import Birth, SignalKind, SignalSpec

pytestmark = pytest.mark.integration

HOUR = 3_600_000
NOW = 1_767_744_000_000 + 10 * 24 * HOUR
SITE, GW = "plant-1", "gw-1"


@pytest.fixture
def store(influx_store: InfluxStore) -> InfluxStore:
    return influx_store


def _live() -> LiveAnalytics:
    live = LiveAnalytics(LiveSettings(rebuild_hours=2))
    live.on_birth(
        SITE,
        Birth(
            gateway=GW,
            site=SITE,
            boot="b",
            agent_version="t",
            config_hash="h",
            started_ms=NOW,
            signals=[
                SignalSpec(id="lvl", kind=SignalKind.STOCK_LEVEL, sku="A-1", location="W1"),
                SignalSpec(id="cnt", kind=SignalKind.PRODUCTION_COUNT, line="L1"),
                SignalSpec(id="tmp", kind=SignalKind.SENSOR, period_s=60.0),
            ],
        ),
    )
    live.set_plans(PlanBook(skus=(SkuPolicy(SITE, "A-1", "W1", lead_time_h=24.0),)))
    return live


async def test_rebuild_fills_trails_and_engine_then_figures_are_written_back(
    store: InfluxStore,
) -> None:
    lines = []
    for m in range(0, 5 * 24 * 60, 10):  # 5 days of stock every 10 min: 40/h used
        t = NOW - 5 * 24 * HOUR + m * 60_000
        lines.append(
            f"stock_level,gateway={GW},location=W1,signal=lvl,site={SITE},sku=A-1 "
            f"value={5000 - 40 * m / 60:.3f} {t}"
        )
    for m in range(0, 10 * 60):  # a counter per minute for 10 h
        t = NOW - 10 * HOUR + m * 60_000
        lines.append(f"production_count,gateway={GW},line=L1,signal=cnt,site={SITE} value={m} {t}")
    for m in range(0, 120):  # 2 h of a sensor per minute
        t = NOW - 2 * HOUR + m * 60_000
        lines.append(f"sensor,gateway={GW},signal=tmp,site={SITE} value={20 + (m % 3)} {t}")
    await store.write(lines, precision="ms")

    live = _live()
    report = await rebuild(live, store, now_ms=NOW)

    ids = {i.signal: sid for sid, i in enumerate(live.index.infos)}
    stock = live.trail(ids["lvl"])
    counter = live.trail(ids["cnt"])
    assert stock is not None
    assert counter is not None
    ts, level = stock.series()
    assert ts.size == 5 * 24  # one per hour, the last value of each
    assert level[-1] == pytest.approx(5000 - 40 * (5 * 24 * 60 - 10) / 60, abs=1e-3)
    assert counter.series()[0].size == 10 * 60
    assert isinstance(counter, CounterTrail)
    assert counter.hourly.series()[0].size == 10  # its hours too, for netting stock
    snap = live.engine.snapshot(np.array([ids["tmp"]]))
    assert snap.seen[0]
    assert report.engine_points >= 120  # the sensor's 2 h at least (plus the others')
    assert report.trail_points == 5 * 24 + 10 * 60 + 10  # stock hours, counter minutes, hours

    live.refresh(NOW)
    [figures] = live.stock_figures
    assert figures.sku == "A-1"
    assert figures.stockout_p50_h is not None
    assert figures.stockout_p50_h == pytest.approx(level[-1] / 40, rel=0.25)

    writer = OutputWriter(live, store)
    await writer.flush(NOW)
    assert writer.failures == 0
    found = await store.query(
        'SELECT "stockout_p50_h", "stock" FROM "depletion" GROUP BY *', epoch="ms"
    )
    assert len(found) == 1
    assert found[0].tags["sku"] == "A-1"
    assert found[0].tags["location"] == "W1"
    [row] = found[0].rows()
    assert row["stockout_p50_h"] is not None


async def test_rebuild_skips_values_that_are_not_numbers(store: InfluxStore) -> None:
    """Another writer's string field in the same measurement must not stop the start-up."""
    await store.write(
        [f'sensor,gateway={GW},signal=tmp,site={SITE} value="text" {NOW - 60_000}'],
        precision="ms",
    )
    await store.write(
        [f"stock_level,gateway={GW},signal=lvl,site={SITE},sku=A-1 value=7 {NOW - 30_000}"],
        precision="ms",
    )
    live = _live()
    report = await rebuild(live, store, now_ms=NOW)
    assert report.engine_points == 1  # the stock reading; the text is not a reading


async def test_a_line_counted_per_sku_is_written_back_with_its_mix_drift(
    store: InfluxStore,
) -> None:
    """Two per-SKU counters of one line, rebuilt from history: the line's total and its mix
    drift land in ``plan_adherence`` tagged with the line and no SKU, beside each counter's."""
    start = NOW - 4 * HOUR
    live = LiveAnalytics()
    live.on_birth(
        SITE,
        Birth(
            gateway=GW, site=SITE, boot="b", agent_version="t", config_hash="h",
            started_ms=NOW, signals=[
                SignalSpec(id=f"c{s}", kind=SignalKind.PRODUCTION_COUNT, line="L1", sku=s)
                for s in ("X", "Y")
            ],
        ),
    )  # fmt: skip
    live.set_plans(
        PlanBook(
            production=tuple(
                ProductionTarget(SITE, "L1", start, start + 8 * HOUR, 480.0, sku=s)
                for s in ("X", "Y")
            )
        )
    )
    lines = [
        f"production_count,gateway={GW},line=L1,signal=c{s},site={SITE},sku={s} "
        f"value={m * rate if m > 0 else 0} {start + m * 60_000}"
        for s, rate in (("X", 3), ("Y", 1))
        for m in range(-10, 4 * 60 + 1)
    ]
    await store.write(lines, precision="ms")
    await rebuild(live, store, now_ms=NOW)
    assert live.refresh(NOW)
    writer = OutputWriter(live, store)
    await writer.flush(NOW)
    assert writer.failures == 0
    found = await store.query(
        'SELECT "mix_drift", "attainment", "produced" FROM "plan_adherence" GROUP BY *', epoch="ms"
    )
    rows = {t.tags.get("sku", ""): next(iter(t.rows())) for t in found}
    assert set(rows) == {"", "X", "Y"}
    assert rows[""]["produced"] == pytest.approx(960.0)  # 720 X + 240 Y
    assert rows[""]["attainment"] == pytest.approx(2.0)  # 960 made of 480 due by now
    assert rows[""]["mix_drift"] == pytest.approx(0.25)  # 3:1 made where 1:1 was planned
    assert rows["X"]["mix_drift"] is None
