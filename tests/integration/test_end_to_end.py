"""One signal end to end, for real: simulated Modbus device -> edge agent -> Mosquitto ->
cloud ingest -> InfluxDB, checked by querying InfluxDB over HTTP.

Every component is the real thing: the firmware_sim Modbus TCP server, the edge agent's
pymodbus client and paho publisher, a Mosquitto and an influxd started for the test, and the
cloud's paho (manual ack) subscriber writing over HTTP. A separate MQTT client records every
batch the agent published, and the test demands that each of those readings is in InfluxDB
with its device timestamp, value and tags, and that the cloud's end-to-end ack reached the agent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import paho.mqtt.client as mqtt
import pytest

from cloud_service.app import build_app
from cloud_service.metadata import MetadataStore
from cloud_service.settings import load_settings
from cloud_service.storage.influx import InfluxStore
from cloud_service.storage.influxql import quote_literal
from edge_agent.agent import run_agent
from edge_agent.config import config_from_mapping
from firmware_sim.modbus_server import StockModbusServer
from firmware_sim.plant import StockProcess
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import TelemetryDecoder
from shared.messages import Ack, Reading, TelemetryBatch
from shared.topics import Channel, TopicScheme

pytestmark = pytest.mark.integration


class Recorder:
    """Records every telemetry batch and ack crossing the broker (a plain MQTT client)."""

    def __init__(self, server: MosquittoServer, site: str, gateway: str) -> None:
        self.batches: list[TelemetryBatch] = []
        self.acks: list[Ack] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        scheme = TopicScheme()
        self._topics = {
            scheme.topic(site, gateway, Channel.TELEMETRY): Channel.TELEMETRY,
            scheme.topic(site, gateway, Channel.ACK): Channel.ACK,
        }
        self._decoder = TelemetryDecoder()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.subscribe([(t, 1) for t in self._topics])
        self.client.loop_start()
        assert self._subscribed.wait(5), "recorder did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if self._topics[msg.topic] is Channel.TELEMETRY:
                decoded = self._decoder.decode(msg.payload, now_ms=_now_ms())
                assert decoded.rejected == []
                self.batches.append(decoded.batch)
            else:
                self.acks.append(msgspec.json.decode(msg.payload, type=Ack))

    def readings(self) -> list[Reading]:
        with self._lock:
            return [r for b in self.batches for r in b.readings]

    def highest_seq(self) -> int:
        with self._lock:
            return max((b.seq for b in self.batches), default=0)

    def highest_ack(self) -> int:
        with self._lock:
            return max((a.seq for a in self.acks), default=0)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_stock_level_reaches_influxdb_with_device_timestamps_and_tags(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway, database = unique_name("site"), unique_name("gw"), unique_name("db")
    signal_id, sku = "wh2.a113.level", "A-113"

    plant = StockProcess(seed=7)
    async with StockModbusServer(plant, port=0, period_s=0.05) as device:
        agent_config = config_from_mapping(
            {
                "site": site,
                "gateway": gateway,
                "broker": {"host": mosquitto.host, "port": mosquitto.port},
                "batching": {"max_readings": 5, "max_age_s": 0.3},
                "spool": {"path": str(tmp_path / "spool.db")},
                "status": {"enabled": False},
                "sources": [
                    {"type": "modbus", "id": "plc1", "host": "127.0.0.1", "port": device.port}
                ],
                "signals": [
                    {
                        "id": signal_id,
                        "source": "plc1",
                        "address": 0,
                        "data_type": "float32",
                        "kind": "stock_level",
                        "unit": "pcs",
                        "sku": sku,
                        "location": "W2",
                        "period_s": 0.1,
                    }
                ],
            },
            use_env=False,
        )
        cloud = build_app(
            load_settings(
                None,
                mqtt={
                    "host": mosquitto.host,
                    "port": mosquitto.port,
                    "client_id": unique_name("cloud"),
                    "share_group": unique_name("grp"),
                },
                influx={"url": influxd.url, "database": database},
                ingest={"max_age_s": 0.05},
                api={"port": 0},
                metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
            )
        )
        recorder = Recorder(mosquitto, site, gateway)
        cloud_stop, agent_stop = asyncio.Event(), asyncio.Event()
        cloud_task = asyncio.create_task(cloud.run(cloud_stop))
        try:
            await cloud.ingest.wait_connected()
            await asyncio.sleep(0.2)  # the subscriptions are granted
            agent_task = asyncio.create_task(
                run_agent(agent_config, stop=agent_stop, handle_signals=False)
            )
            await _until(lambda: len(recorder.readings()) >= 30, 30, "30 readings from the agent")
            agent_stop.set()
            await asyncio.wait_for(agent_task, 15)
            last = recorder.highest_seq()
            await _until(
                lambda: recorder.highest_ack() >= last,
                15,
                f"the ack of seq {last} (ingest: {cloud.ingest.stats}, acks: {recorder.acks})",
            )
        finally:
            cloud_stop.set()
            await asyncio.wait_for(cloud_task, 15)
            recorder.close()

    sent = recorder.readings()
    assert len(sent) >= 30
    assert {r.signal for r in sent} == {signal_id}
    metadata = MetadataStore.from_settings(cloud.settings.metadata)
    try:
        assert await metadata.dead_letters.count_by_reason() == {}
        assert gateway in [g["gateway"] for g in await metadata.registry.gateways()]
    finally:
        await metadata.aclose()

    async with InfluxStore(cloud.store.settings) as store:
        series = await store.query(
            "SELECT value, q, site, gateway, signal, sku, location FROM stock_level "
            f"WHERE signal = {quote_literal(signal_id)} AND gateway = {quote_literal(gateway)}",
            epoch="ms",
        )
    assert len(series) == 1
    rows = series[0].rows()
    stored = {row["time"]: row for row in rows}
    assert len(stored) == len({r.ts for r in sent})  # one point per device timestamp
    for r in sent:
        row = stored[r.ts]
        assert row["value"] == r.value
        assert row["q"] == int(r.quality)
        assert (row["site"], row["gateway"], row["sku"], row["location"]) == (
            site,
            gateway,
            sku,
            "W2",
        )
    assert cloud.ingest.stats.points_written >= len(sent)
    assert cloud.ingest.stats.acks_published >= 1
