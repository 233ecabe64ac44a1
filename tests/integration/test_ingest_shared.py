"""Two ingest workers on one MQTT 5 shared subscription, sharing a PostgreSQL metadata store.

The broker splits every gateway's batches between them; the union must be complete, and
thanks to the workers' stored-batch reports each gateway still gets acks up to its last seq
although neither worker saw a contiguous run alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from ingest_support import (
    Publisher,
    batch,
    cloud_settings,
    expected_times,
    influx_store,
    pg_database,
    stored_times,
    until,
)

from cloud_service.app import build_app
from firmware_sim.stack import InfluxServer, MosquittoServer

pytestmark = pytest.mark.integration

GATEWAYS, BATCHES, READINGS = 3, 60, 25


async def test_two_workers_split_the_load_and_the_union_is_complete(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    site, group, database = unique_name("site"), unique_name("grp"), unique_name("db")
    t0 = int(time.time() * 1000) - 600_000
    seqs = range(1, BATCHES + 1)
    async with pg_database() as url:
        apps = [
            build_app(
                cloud_settings(mosquitto, influxd, unique_name, url, group=group, database=database)
            )
            for _ in range(2)
        ]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(app.run(stop)) for app in apps]
        pubs = [Publisher(mosquitto, site, unique_name("gw")) for _ in range(GATEWAYS)]
        try:
            for app in apps:
                await app.ingest.wait_connected()
            await asyncio.sleep(0.3)

            def publish(pub: Publisher) -> None:
                pub.publish_all([batch(pub.gateway, s, READINGS, t0=t0) for s in seqs])

            threads = [threading.Thread(target=publish, args=(p,)) for p in pubs]
            for thread in threads:
                thread.start()
            for thread in threads:
                await asyncio.to_thread(thread.join, 60)
            for pub in pubs:
                await until(
                    lambda pub=pub: pub.highest_ack() >= BATCHES,  # type: ignore[misc]
                    60,
                    f"ack of seq {BATCHES} for {pub.gateway}",
                )
            shares = [app.ingest.stats.messages for app in apps]
        finally:
            stop.set()
            await asyncio.gather(*(asyncio.wait_for(t, 20) for t in tasks))
            for pub in pubs:
                pub.close()
    assert all(n > 0 for n in shares), shares  # both took part
    assert sum(shares) >= GATEWAYS * BATCHES
    async with influx_store(influxd, database) as store:
        for pub in pubs:
            got = await stored_times(store, "unclassified", pub.gateway)
            assert got == expected_times(t0, seqs, READINGS)
