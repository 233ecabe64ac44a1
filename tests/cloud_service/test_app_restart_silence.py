"""A cloud restart by itself raises no gateway-offline (review finding G), through the real
app: its start-up order (metadata, live loop, monitor, then ingest), real Mosquitto, influxd
and a SQLite registry left by a previous run whose gateways were last seen 8 minutes ago.

A gateway that talks once ingest is connected raises nothing; one that stays silent still
raises, a full window after the moment ingest connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.app import build_app
from cloud_service.ingest.records import BirthRecord, GatewayActivity, StateRecord
from cloud_service.metadata import MetadataStore
from cloud_service.settings import CloudSettings, load_settings
from firmware_sim.stack import InfluxServer, MosquittoServer
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

pytestmark = pytest.mark.integration

MIN = 60_000
PERIOD_S = 1.0  # a gateway silent for 3 periods (its signals' window) is silent


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def settings_for(
    mosquitto: MosquittoServer, influxd: InfluxServer, name: Callable[[str], str], tmp: Path
) -> CloudSettings:
    return load_settings(
        None,
        mqtt={
            "host": mosquitto.host,
            "port": mosquitto.port,
            "client_id": name("cloud"),
            "share_group": name("grp"),
        },
        influx={"url": influxd.url, "database": name("db")},
        metadata={"url": f"sqlite+aiosqlite:///{tmp / 'meta.sqlite'}", "flush_interval_s": 0.2},
        ingest={"max_age_s": 0.05, "peer_reports": False},
        health={"check_interval_s": 0.1},
        live={"evaluate_interval_s": 0.2},
        api={"enabled": False},
    )


async def registry_of_a_previous_run(
    settings: CloudSettings, site: str, gateways: dict[str, list[str]], last_seen_ms: int
) -> None:
    """What the cloud saved before it went down: births, online states, last seen times."""
    metadata = MetadataStore.from_settings(settings.metadata)
    try:
        await metadata.migrate()
        started = last_seen_ms - 60 * MIN
        births = []
        for gw, signals in gateways.items():
            specs = [SignalSpec(id=s, kind=SignalKind.SENSOR, period_s=PERIOD_S) for s in signals]
            b = Birth(
                gateway=gw, site=site, boot="b1", agent_version="t", config_hash="h",
                started_ms=started, signals=specs,
            )  # fmt: skip
            births.append(BirthRecord(site, b, started))
        states = [
            StateRecord(site, gw, State(state=GatewayState.ONLINE, boot="b1", ts=started), started)
            for gw in gateways
        ]
        await metadata.registry.record(births, states)
        await metadata.registry.save_activity(
            [GatewayActivity(site, gw, last_seen_ms) for gw in gateways], [], []
        )
    finally:
        await metadata.aclose()


async def test_a_cloud_restart_raises_no_gateway_offline_and_a_silent_gateway_still_does(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, talks, silent = unique_name("site"), unique_name("gwa"), unique_name("gwb")
    gateways = {talks: ["a1", "a2"], silent: ["b1", "b2"]}
    settings = settings_for(mosquitto, influxd, unique_name, tmp_path)
    await registry_of_a_previous_run(settings, site, gateways, now_ms() - 8 * MIN)

    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    gateway = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    gateway.connect(mosquitto.host, mosquitto.port)
    gateway.loop_start()
    topic = TopicScheme(settings.mqtt.topic_prefix).topic(site, talks, Channel.TELEMETRY)

    async def keep_talking() -> None:
        seq = 0
        while True:
            seq += 1
            t = now_ms()
            readings = [Reading(s, t, 20.0 + seq % 5) for s in gateways[talks]]
            gateway.publish(
                topic,
                encode(TelemetryBatch(gateway=talks, boot="b1", seq=seq, readings=readings)),
                qos=1,
            )
            await asyncio.sleep(0.2)

    talking: asyncio.Task[None] | None = None
    try:
        await app.ingest.wait_connected(60)
        connected = now_ms()
        await asyncio.sleep(0.5)  # the gateway's data comes a moment later (the backlog)
        talking = asyncio.create_task(keep_talking())
        runtime = app.runtime
        assert runtime is not None

        def open_alerts() -> dict[str, int]:
            service = runtime.service
            assert service is not None
            return {
                a.key.subject: a.raised_ms
                for a in service.open_alerts()
                if a.key.rule == "gateway-offline" and a.key.site == site
            }

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while silent not in open_alerts():
            assert loop.time() < deadline, "the silent gateway raised nothing"
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
        alerts = open_alerts()
        # cleared or not, an alert raised stays open until acknowledged: none for the
        # gateway that talks, one for the silent gateway, raised a window after the connection
        assert sorted(alerts) == [silent]
        assert alerts[silent] >= connected + 3 * PERIOD_S * 1000 - 200
    finally:
        if talking is not None:
            talking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await talking
        stop.set()
        await asyncio.wait_for(task, 60)
        gateway.disconnect()
        gateway.loop_stop()
