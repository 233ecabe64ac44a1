"""Backfill: days of history through the cloud's storage interface into a real influxd, in
the ingest's schema, exactly the samples a live run would produce."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sim_scenarios import DAY_MS, MONDAY, by_signal, collect, small_scenario

from cloud_service.storage import InfluxSettings, InfluxStore, StorageError
from firmware_sim.backfill import backfill, sample_line, series_keys
from firmware_sim.core.sensors import Sample
from firmware_sim.core.truth import Truth
from firmware_sim.core.world import World
from firmware_sim.stack import InfluxServer, free_port
from shared.messages import Quality

DROPOUT = '\n[[faults]]\nkind = "dropout"\ntarget = "p1.level"\nat_h = 20\nduration_h = 2\n'


def test_lines_match_the_ingest_schema() -> None:
    keys = series_keys(small_scenario(), "gw-9")
    assert (
        keys["p1.level"]
        == "stock_level,gateway=gw-9,location=W1,signal=p1.level,site=t-plant,sku=P1"
    )
    assert keys["l1.count"] == "production_count,gateway=gw-9,line=L1,signal=l1.count,site=t-plant"
    own = series_keys(small_scenario())  # live, p1.level comes from the smart sensor ss-1
    assert "gateway=ss-1," in own["p1.level"]
    assert "gateway=sim-gw," in own["l1.count"]  # the scenario's gateway (the edge agent)
    key = keys["p1.level"]
    assert sample_line(key, Sample("p1.level", 5, 12.5, Quality.GOOD)) == f"{key} value=12.5,q=0i 5"
    assert sample_line(key, Sample("p1.level", 6, None, Quality.COMM_FAILURE)) == f"{key} q=3i 6"


async def test_backfill_writes_what_the_world_samples(
    influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    scenario = small_scenario(DROPOUT)
    database = unique_name("bf")
    end = MONDAY + 2 * DAY_MS
    progress: list[tuple[int, int, int]] = []
    truth = Truth()
    async with InfluxStore(InfluxSettings(url=influxd.url, database=database)) as store:
        await store.ensure_database()
        stats = await backfill(
            scenario,
            store,
            seed=6,
            start_ms=MONDAY,
            end_ms=end,
            truth=truth,
            batch_lines=1000,
            progress=lambda *p: progress.append(p),
        )
        counted = await store.query("SELECT count(q) FROM /.*/")
        levels = await store.query(
            "SELECT value, q FROM stock_level WHERE signal = 'p1.level' ORDER BY time"
        )
    # 2 days at a 60 s floor: p1.level, l1.count 2880 each; l1.temp 2880 (period 120 -> floor
    # keeps 120): 1440; b1.weight every 300 s: 576.
    assert stats.points == 2880 + 2880 + 1440 + 576
    assert sum(s.values[0][1] for s in counted) == stats.points
    assert stats.batches == 8
    assert progress[-1] == (2 * DAY_MS, 2 * DAY_MS, stats.points)
    assert stats.truth_records == len(truth.records) >= 2

    reference = World(scenario, seed=6, start_ms=MONDAY, sample_floor_s=60)
    samples = collect(reference)
    reference.advance_to(end - 1)
    expected = [(s.ts, s.value, int(s.quality)) for s in by_signal(samples, "p1.level")]
    (series,) = levels
    assert [(t, v, q) for t, v, q in series.values] == expected
    assert sum(1 for _, v, q in series.values if v is None and q == 3) == 120  # the dropout
    assert reference.truth.records == truth.records


async def test_a_store_failure_stops_the_backfill() -> None:
    settings = InfluxSettings(url=f"http://127.0.0.1:{free_port()}", database="x", max_retries=0)
    async with InfluxStore(settings) as store:
        with pytest.raises(StorageError):
            await backfill(small_scenario(), store, seed=1, start_ms=MONDAY, end_ms=MONDAY + DAY_MS)
