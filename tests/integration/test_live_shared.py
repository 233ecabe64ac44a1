"""The live loop of a scaled-out fleet: two ingest workers split a gateway's messages (MQTT 5
shared subscription), and the one that runs the live loop still sees every reading through
its own subscription (``[live] source = "subscription"``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_support import Publisher, batch, birth, cloud_settings, sqlite_url, until

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.app import build_app
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.topics import Channel

pytestmark = pytest.mark.integration

BATCHES, READINGS = 40, 10


async def test_live_worker_sees_the_whole_stream_while_ingest_splits_it(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gw, group = unique_name("site"), unique_name("gw"), unique_name("grp")
    database, url = unique_name("db"), sqlite_url(tmp_path)
    live_on = cloud_settings(
        mosquitto, influxd, unique_name, url, group=group, database=database,
        live={"source": "subscription"},
    )  # fmt: skip
    live_off = cloud_settings(
        mosquitto, influxd, unique_name, url, group=group, database=database,
        live={"enabled": False},
    )  # fmt: skip
    apps = [build_app(live_on), build_app(live_off)]
    assert apps[1].runtime is None
    runtime = apps[0].runtime
    assert runtime is not None

    def folded(sid: int) -> int:  # points the anomaly engine has taken for one series
        return int(runtime.live.engine.state[sid, ak.S_N])

    stop = asyncio.Event()
    tasks = [asyncio.create_task(app.run(stop)) for app in apps]
    pub = Publisher(mosquitto, site, gw)
    try:
        for app in apps:
            await app.ingest.wait_connected()
        await until(
            lambda: runtime.feed is not None and runtime.feed.connected.is_set(), 20, "feed"
        )
        await asyncio.sleep(0.3)
        pub.publish(birth(site, gw, ["s"], period_s=1.0), pub.topic(Channel.BIRTH), retain=True)
        t0 = int(time.time() * 1000) - 600_000
        pub.publish_all([batch(gw, s, READINGS, t0=t0) for s in range(1, BATCHES + 1)])
        await until(lambda: pub.highest_ack() >= BATCHES, 60, "every batch stored")
        sid = runtime.live.index.id_of(site, gw, "s")
        await until(lambda: folded(sid) >= BATCHES * READINGS, 20, "the live loop fed")
        shares = [app.ingest.stats.messages for app in apps]
    finally:
        stop.set()
        await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks))
        pub.close()
    assert all(n > 0 for n in shares), shares  # the broker split the stream...
    assert folded(sid) == BATCHES * READINGS  # ...and the live loop saw all of it
    assert [i.signal for i in runtime.live.index.infos if i.site == site] == ["s"]
