"""With two writes in flight, births and states reach the registry in arrival order, even
when the earlier write is slower to store its lines. Real influxd and SQLite.

The case the registry's age check alone cannot order: a gateway goes online and dies at
once. Its *online* rides in a write with a lot of telemetry; its MQTT will (*offline*, stamped
when it connected, so *older* than the online) arrives next, in a write with nothing else.
The will must end up recorded last.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from cloud_service.app import build_app
from cloud_service.ingest.pipeline import Inbound
from cloud_service.settings import load_settings
from firmware_sim.stack import InfluxServer
from shared.codec import encode
from shared.messages import (
    Birth,
    GatewayState,
    Reading,
    SignalKind,
    SignalSpec,
    State,
    TelemetryBatch,
)
from shared.topics import Channel, TopicScheme
from tests.integration.ingest_support import until

SCHEME = TopicScheme()


async def test_the_will_after_a_slow_write_is_recorded_last(
    influxd: InfluxServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    settings = load_settings(
        None,
        mqtt={"client_id": unique_name("cloud"), "share_group": unique_name("grp")},
        influx={"url": influxd.url, "database": unique_name("db")},
        metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
        ingest={"writes_in_flight": 2, "peer_reports": False, "max_readings": 10_000},
        api={"port": 0},
    )
    app = build_app(settings)
    worker = app.ingest
    now = time.time_ns() // 1_000_000
    topic = {c: SCHEME.topic("s1", "gw1", c) for c in Channel}
    birth = Birth(
        gateway="gw1", site="s1", boot="b1", agent_version="t", config_hash="h",
        started_ms=now - 60_000, signals=[SignalSpec(id="sig", kind=SignalKind.SENSOR)],
    )  # fmt: skip
    will = State(state=GatewayState.OFFLINE, boot="b1", ts=now - 1000)  # set at connect
    online = State(state=GatewayState.ONLINE, boot="b1", ts=now - 900)
    tele = [
        encode(
            TelemetryBatch(
                gateway="gw1",
                boot="b1",
                seq=seq,
                readings=[
                    Reading("sig", now - 50_000 + seq * 10_000 + i, 1.0) for i in range(10_000)
                ],
            )
        )
        for seq in (1, 2, 3)
    ]
    try:
        await app.metadata.migrate()
        await app.store.ensure_database()
        await app.metadata.registry.record(
            worker.core.prepare([Inbound(topic[Channel.BIRTH], encode(birth), now, 0)]).births, []
        )
        slow = worker.core.prepare(
            [Inbound(topic[Channel.TELEMETRY], t, now, i) for i, t in enumerate(tele, 1)]
            + [Inbound(topic[Channel.STATE], encode(online), now, 4)]
        )
        fast = worker.core.prepare([Inbound(topic[Channel.STATE], encode(will), now + 1, 5)])
        assert len(slow.lines) == 30_000
        assert not fast.lines
        await worker._ready.put(slow)
        await worker._ready.put(fast)
        writer = asyncio.create_task(worker._write())
        try:
            await until(lambda: worker.acked >= 5, 60, "both writes acked")
        finally:
            writer.cancel()
        (gw,) = await app.metadata.registry.gateways()
        assert (gw["state"], gw["state_ms"]) == ("offline", now - 1000)
    finally:
        await app.metadata.aclose()
        await app.store.aclose()
