"""A stop (SIGTERM: ``cli`` sets the stop event) while an InfluxDB write is in flight lets the
write finish, acks it (PUBACK and the gateway's end-to-end ack), and only then disconnects.

Before, the write was cancelled: nothing was acked, the broker redelivered the batch to the
restarted worker, and a cancel could land inside a metadata (SQLite) transaction.
Real Mosquitto (a broker of its own: the test restarts a persistent session), influxd, SQLite.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt

from cloud_service.app import CloudApp, build_app
from cloud_service.settings import CloudSettings, load_settings
from cloud_service.storage.influx import InfluxSettings, InfluxStore
from cloud_service.storage.influxql import quote_literal
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import Ack, Birth, Reading, SignalKind, SignalSpec, TelemetryBatch
from shared.topics import Channel, TopicScheme
from tests.integration.ingest_support import until

SCHEME = TopicScheme()
SITE, GATEWAY = "site1", "gw1"
WRITE_S = 1.0  # how long the slowed-down InfluxDB write takes


class Gateway:
    """A gateway-like MQTT 5 client (QoS 1) recording the end-to-end acks it gets back."""

    def __init__(self, server: MosquittoServer) -> None:
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.subscribe(SCHEME.topic(SITE, GATEWAY, Channel.ACK), 1)
        self.client.loop_start()
        assert subscribed.wait(5), "gateway did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.acks.append(msgspec.json.decode(msg.payload, type=Ack))

    def highest_ack(self) -> int:
        with self._lock:
            return max((a.seq for a in self.acks), default=0)

    def publish(self, channel: Channel, payload: bytes, *, retain: bool = False) -> None:
        info = self.client.publish(
            SCHEME.topic(SITE, GATEWAY, channel), payload, qos=1, retain=retain
        )
        info.wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def birth() -> bytes:
    spec = SignalSpec(id="s", kind=SignalKind.STOCK_LEVEL, unit="pcs", sku="A-1", period_s=60)
    now = time.time_ns() // 1_000_000
    return encode(
        Birth(
            gateway=GATEWAY,
            site=SITE,
            boot="b1",
            agent_version="test",
            config_hash="h",
            started_ms=now,
            signals=[spec],
        )
    )


def telemetry(seq: int, n: int) -> bytes:
    t0 = time.time_ns() // 1_000_000 - 60_000
    readings = [Reading("s", t0 + i, float(i)) for i in range(n)]
    return encode(TelemetryBatch(gateway=GATEWAY, boot="b1", seq=seq, readings=readings))


def slow_writes(app: CloudApp, events: list[str], started: asyncio.Event) -> None:
    """Delay every InfluxDB write by ``WRITE_S`` (then really write it), recording events."""
    real_write = app.store.write

    async def write(lines: bytes | Sequence[str], *, precision: str = "ms") -> None:
        events.append("write started")
        started.set()
        try:
            await asyncio.sleep(WRITE_S)
        except asyncio.CancelledError:
            events.append("write cancelled")
            raise
        await real_write(lines, precision=precision)
        events.append("write finished")

    app.store.write = write  # type: ignore[method-assign]


def settings_for(
    mosquitto: MosquittoServer, influxd: InfluxServer, tmp_path: Path, database: str, **ingest: Any
) -> CloudSettings:
    return load_settings(
        None,
        mqtt={"host": mosquitto.host, "port": mosquitto.port, "client_id": "cloud-stop"},
        influx={"url": influxd.url, "database": database},
        metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
        ingest={"max_age_s": 0.05, "peer_reports": False, **ingest},
        live={"enabled": False},
        api={"port": 0},
    )


async def test_a_stop_mid_write_finishes_and_acks_the_write(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    database = unique_name("db")
    settings = settings_for(broker, influxd, tmp_path, database)
    assert settings.ingest.shutdown_timeout_s > WRITE_S
    app = build_app(settings)
    events: list[str] = []
    started = asyncio.Event()
    slow_writes(app, events, started)
    stop = asyncio.Event()
    runner = asyncio.create_task(app.run(stop))
    gateway = Gateway(broker)
    try:
        await app.ingest.wait_connected(10)
        gateway.publish(Channel.BIRTH, birth(), retain=True)
        gateway.publish(Channel.TELEMETRY, telemetry(1, 10))
        await asyncio.wait_for(started.wait(), 10)
        stop.set()  # what the SIGTERM handler does
        await asyncio.wait_for(runner, 20)

        assert events == ["write started", "write finished"]
        assert app.ingest.acked == app.ingest.received > 0
        # The end-to-end ack left before the disconnect (retained: it reaches the gateway).
        await until(lambda: gateway.highest_ack() == 1, 5, "the end-to-end ack of seq 1")
        rows = await count_points(influxd, database)
        assert rows == 10

        # The PUBACK left too: the same persistent session, resumed, gets no redelivery.
        again = build_app(settings)
        writes: list[str] = []
        again_started = asyncio.Event()
        slow_writes(again, writes, again_started)
        stop_again = asyncio.Event()
        runner = asyncio.create_task(again.run(stop_again))
        await again.ingest.wait_connected(10)
        await asyncio.sleep(1.0)  # > max_age_s many times: a redelivery would be written
        stop_again.set()
        await asyncio.wait_for(runner, 20)
        assert writes == [], "the batch was redelivered: its PUBACK never reached the broker"
    finally:
        stop.set()
        gateway.close()
        if not runner.done():
            runner.cancel()


async def test_a_write_outlasting_the_shutdown_timeout_is_cancelled_unacked(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    settings = settings_for(
        broker, influxd, tmp_path, unique_name("db"), shutdown_timeout_s=WRITE_S / 4
    )
    app = build_app(settings)
    events: list[str] = []
    started = asyncio.Event()
    slow_writes(app, events, started)
    stop = asyncio.Event()
    runner = asyncio.create_task(app.run(stop))
    gateway = Gateway(broker)
    try:
        await app.ingest.wait_connected(10)
        gateway.publish(Channel.BIRTH, birth(), retain=True)
        gateway.publish(Channel.TELEMETRY, telemetry(1, 10))
        await asyncio.wait_for(started.wait(), 10)
        t0 = time.monotonic()
        stop.set()
        await asyncio.wait_for(runner, 20)
        assert time.monotonic() - t0 < WRITE_S  # bounded by the timeout, not the write
        assert events == ["write started", "write cancelled"]
        assert app.ingest.acked == 0
        assert gateway.highest_ack() == 0
    finally:
        stop.set()
        gateway.close()
        if not runner.done():
            runner.cancel()


async def count_points(influxd: InfluxServer, database: str) -> int:
    store = InfluxStore(InfluxSettings(url=influxd.url, database=database))
    try:
        series = await store.query(
            f'SELECT count("value") FROM /.*/ WHERE gateway = {quote_literal(GATEWAY)}'
        )
        return sum(int(s.values[0][1]) for s in series)
    finally:
        await store.aclose()
