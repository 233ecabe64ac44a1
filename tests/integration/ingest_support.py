"""Helpers for the ingest integration tests: publishers, waits, a database per test."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import paho.mqtt.client as mqtt

from cloud_service.settings import CloudSettings, load_settings
from cloud_service.storage.influx import InfluxSettings, InfluxStore
from cloud_service.storage.influxql import quote_literal
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import Ack, Birth, Reading, SignalKind, SignalSpec, TelemetryBatch
from shared.topics import Channel, TopicScheme

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEME = TopicScheme()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextlib.asynccontextmanager
async def pg_database() -> AsyncIterator[str]:
    """A new PostgreSQL database for one test; its SQLAlchemy URL. Dropped afterwards."""
    name = f"fdtest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        conn = await asyncpg.connect(PG_ADMIN)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def cloud_settings(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    metadata_url: str,
    *,
    group: str | None = None,
    database: str | None = None,
    **sections: dict[str, Any],
) -> CloudSettings:
    mqtt_section = {
        "host": mosquitto.host,
        "port": mosquitto.port,
        "client_id": unique_name("cloud"),
        "share_group": group or unique_name("grp"),
        **sections.pop("mqtt", {}),
    }
    return load_settings(
        None,
        mqtt=mqtt_section,
        influx={"url": influxd.url, "database": database or unique_name("db")},
        metadata={"url": metadata_url, **sections.pop("metadata", {})},
        ingest={
            "max_age_s": 0.05,
            "retry_base_s": 0.05,
            "retry_cap_s": 0.5,
            **sections.pop("ingest", {}),
        },
        api={"port": 0, **sections.pop("api", {})},
        **sections,
    )


def sqlite_url(tmp_path: Path, name: str = "meta") -> str:
    return f"sqlite+aiosqlite:///{tmp_path / f'{name}.sqlite'}"


async def until(condition: Callable[[], Any], within_s: float, what: str) -> None:
    """Poll ``condition`` (sync or async) until true; a generous bound, not a speed claim."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def birth(site: str, gateway: str, signals: list[str], period_s: float = 60.0) -> bytes:
    specs = [
        SignalSpec(id=s, kind=SignalKind.STOCK_LEVEL, unit="pcs", sku="A-1", period_s=period_s)
        for s in signals
    ]
    return encode(
        Birth(
            gateway=gateway,
            site=site,
            boot="b1",
            agent_version="test",
            config_hash="h",
            started_ms=now_ms(),
            signals=specs,
        )
    )


def batch(
    gateway: str,
    seq: int,
    n: int,
    *,
    boot: str = "b1",
    t0: int | None = None,
    signal: str = "s",
    first_unacked: int = 1,
) -> bytes:
    """Batch ``seq`` of ``n`` readings with distinct device times (so each is its own point)."""
    start = (t0 if t0 is not None else now_ms() - 60_000) + seq * n
    readings = [Reading(signal, start + i, float(seq * 1000 + i)) for i in range(n)]
    return encode(
        TelemetryBatch(
            gateway=gateway, boot=boot, seq=seq, readings=readings, first_unacked=first_unacked
        )
    )


def expected_times(t0: int, seqs: range, n: int) -> set[int]:
    """Device times of ``batch(..., seq, n, t0=t0)`` for every seq."""
    return {t0 + seq * n + i for seq in seqs for i in range(n)}


class Publisher:
    """A gateway-like MQTT 5 client (QoS 1) that also records the acks it gets back."""

    def __init__(self, server: MosquittoServer, site: str, gateway: str) -> None:
        self.site, self.gateway = site, gateway
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(200)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.subscribe(SCHEME.topic(site, gateway, Channel.ACK), 1)
        self.client.loop_start()
        assert self._subscribed.wait(5), "publisher did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append(msgspec.json.decode(msg.payload, type=Ack))

    def topic(self, channel: Channel = Channel.TELEMETRY) -> str:
        return SCHEME.topic(self.site, self.gateway, channel)

    def publish(
        self, payload: bytes, topic: str | None = None, *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        info = self.client.publish(topic or self.topic(), payload, qos=1, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        return info

    def publish_all(self, payloads: list[bytes], topic: str | None = None) -> None:
        infos = [self.publish(p, topic) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)

    def highest_ack(self, boot: str = "b1") -> int:
        with self._lock:
            return max((a.seq for a in self.acks if a.boot == boot), default=0)

    def close(self) -> None:
        """Disconnect, clearing this gateway's retained births and states from the broker
        (the session broker is shared: other tests' workers would receive them)."""
        for channel in (Channel.BIRTH, Channel.STATE):
            self.client.publish(self.topic(channel), b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


def influx_store(influxd: InfluxServer, database: str) -> InfluxStore:
    return InfluxStore(InfluxSettings(url=influxd.url, database=database))


async def count_points(store: InfluxStore, measurement: str, gateway: str) -> int:
    series = await store.query(
        f'SELECT count("value") FROM "{measurement}" WHERE gateway = {quote_literal(gateway)}'
    )
    return int(series[0].values[0][1]) if series else 0


async def stored_times(store: InfluxStore, measurement: str, gateway: str) -> set[int]:
    series = await store.query(
        f'SELECT "value" FROM "{measurement}" WHERE gateway = {quote_literal(gateway)}'
    )
    return {row[0] for s in series for row in s.values}


def nan_batch(gateway: str, seq: int, n: int, bad_index: int) -> bytes:
    """``n`` readings, one of them a ``NaN`` token as some JSON writers emit it."""
    doc = json.loads(batch(gateway, seq, n))
    doc["readings"][bad_index][2] = float("nan")
    return json.dumps(doc).encode()
