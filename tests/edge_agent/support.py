"""Helpers for the edge agent's integration tests (imported as ``tests.edge_agent.support``).

:class:`CountingDevice` is a real Modbus TCP server (pymodbus) whose holding registers 0-1
hold a uint32 that counts the reads of it: every reading the agent takes has a unique value,
the serial number of that read, so a test knows exactly what the device produced and can find
every missing reading in InfluxDB by value. (firmware_sim's stock plant changes on a timer, so
it cannot tell how many readings were taken.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from cloud_service.app import CloudApp, build_app
from cloud_service.settings import load_settings
from edge_agent.agent import Agent
from edge_agent.config import config_from_mapping
from edge_agent.runner import run_agent
from edge_agent.status import AgentStatus
from firmware_sim.stack import InfluxServer, MosquittoServer
from firmware_sim.stack.ports import free_port
from shared.messages import AlertAck, Birth, TelemetryBatch
from shared.topics import Channel, TopicScheme


class CountingDevice:
    """A Modbus device whose registers 0-1 (uint32) count the reads of them."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.count = 0
        self._server: ModbusTcpServer | None = None

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code in (3, 4) and address <= 0 < address + count:
            self.count += 1
            offset = -start_address
            current_registers[offset : offset + 2] = [self.count >> 16, self.count & 0xFFFF]
        return None

    async def start(self) -> None:
        device = SimDevice(
            id=1,
            simdata=[SimData(0, values=0, datatype=DataType.UINT32, readonly=True)],
            action=self._on_access,
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)

    async def __aenter__(self) -> CountingDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def counter_signal(
    source: str = "plc1", signal_id: str = "cnt", period_s: float = 0.05
) -> dict[str, Any]:
    return {
        "id": signal_id,
        "source": source,
        "address": 0,
        "data_type": "uint32",
        "kind": "sensor",
        "period_s": period_s,
    }


def agent_config(
    *,
    site: str,
    gateway: str,
    broker: MosquittoServer,
    device_port: int,
    spool_path: Path,
    **sections: Any,
) -> dict[str, Any]:
    """A gateway config as a mapping: one counting Modbus device, tight test timings."""
    values: dict[str, Any] = {
        "site": site,
        "gateway": gateway,
        "broker": {"host": broker.host, "port": broker.port, "reconnect_max_s": 1},
        "batching": {"max_readings": 10, "max_age_s": 0.2},
        "spool": {"path": str(spool_path), "expire_check_s": 0.5},
        "delivery": {"resend_after_s": 1.0, "resend_max_s": 2.0, "birth_min_interval_s": 0},
        "status": {"enabled": False},
        "sources": [
            {
                "type": "modbus",
                "id": "plc1",
                "host": "127.0.0.1",
                "port": device_port,
                "timeout_s": 0.5,
                "retries": 0,
                "reconnect_min_s": 0.05,
                "reconnect_max_s": 0.2,
            }
        ],
        "signals": [counter_signal()],
    }
    for key, value in sections.items():
        values[key] = {**values[key], **value} if isinstance(values.get(key), dict) else value
    return values


def cloud(
    broker: MosquittoServer, influxd: InfluxServer, database: str, client_id: str, tmp: Path
) -> CloudApp:
    """The real cloud ingest, in process; the same ``client_id`` resumes its broker session."""
    return build_app(
        load_settings(
            None,
            mqtt={
                "host": broker.host,
                "port": broker.port,
                "client_id": client_id,
                "share_group": f"g{client_id}",
            },
            influx={"url": influxd.url, "database": database},
            ingest={"max_age_s": 0.05},
            metadata={"url": f"sqlite+aiosqlite:///{tmp / f'meta-{client_id}.sqlite'}"},
            api={"port": 0},
        )
    )


class CloudRunner:
    """Start, stop and restart the cloud ingest inside the test's event loop."""

    def __init__(self, factory: Callable[[], CloudApp]) -> None:
        self._factory = factory
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.app: CloudApp | None = None

    async def start(self) -> None:
        self._stop = asyncio.Event()
        self.app = self._factory()
        self._task = asyncio.create_task(self.app.run(self._stop))
        await self.app.ingest.wait_connected(15)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 20)
        self._task = None


class Recorder:
    """Every telemetry batch, birth and alert ack crossing the broker for one gateway."""

    def __init__(self, broker: MosquittoServer, site: str, gateway: str) -> None:
        self.batches: list[TelemetryBatch] = []
        self.births: list[Birth] = []
        self.alert_acks: list[AlertAck] = []
        self._lock = threading.Lock()
        scheme = TopicScheme()
        self._channels = {
            scheme.topic(site, gateway, ch): ch
            for ch in (Channel.TELEMETRY, Channel.BIRTH, Channel.ALERT_ACKS)
        }
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe([(t, 1) for t in self._channels])
        self.client.loop_start()
        assert subscribed.wait(5), "recorder did not subscribe"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        channel = self._channels[msg.topic]
        with self._lock:
            if channel is Channel.TELEMETRY:
                self.batches.append(msgspec.json.decode(msg.payload, type=TelemetryBatch))
            elif channel is Channel.BIRTH:
                self.births.append(msgspec.json.decode(msg.payload, type=Birth))
            else:
                self.alert_acks.append(msgspec.json.decode(msg.payload, type=AlertAck))

    def snapshot(self) -> tuple[list[TelemetryBatch], list[Birth], list[AlertAck]]:
        with self._lock:
            return list(self.batches), list(self.births), list(self.alert_acks)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(
    condition: Callable[[], bool], within_s: float, what: str | Callable[[], str]
) -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``within_s`` (not an assertion
    on speed: the bound only keeps a broken run from hanging)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await asyncio.sleep(0.05)


async def influx_points(
    influxd: InfluxServer, database: str, gateway: str
) -> dict[str, dict[int, tuple[float | None, int]]]:
    """Every point of ``gateway`` in InfluxDB: signal -> {time ms: (value, quality)}."""
    query = f"SELECT value, q, signal FROM /.*/ WHERE gateway = '{gateway}'"
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{influxd.url}/query", params={"db": database, "q": query, "epoch": "ms"}
        )
    response.raise_for_status()
    out: dict[str, dict[int, tuple[float | None, int]]] = {}
    for result in response.json().get("results", []):
        for series in result.get("series", []):
            columns = series["columns"]
            for row in series["values"]:
                point = dict(zip(columns, row, strict=True))
                out.setdefault(point["signal"], {})[int(point["time"])] = (
                    point["value"],
                    int(point["q"]),
                )
    return out


def good_values(points: dict[int, tuple[float | None, int]]) -> set[int]:
    return {int(v) for v, q in points.values() if v is not None and q == 0}


class CoilDevice:
    """A real Modbus TCP server (pymodbus) with 32 coils, for the andon light: records every
    write and can be stopped and restarted (a restart clears the coils, as a PLC's would)."""

    def __init__(self, port: int | None = None, unit_id: int = 1) -> None:
        self.port = port or free_port()
        self.unit_id = unit_id
        self.writes: list[tuple[int, bool]] = []  # (coil, value) accepted since the last start
        self._server: ModbusTcpServer | None = None

    async def _on_access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code == 5 and set_values is not None:
            self.writes.append((address, bool(set_values[0])))
        return None

    async def start(self) -> None:
        self.writes = []  # a restarted device has lost its coils
        coils = [SimData(0, count=32, values=False, datatype=DataType.BITS)]
        inputs = [SimData(0, count=1, values=False, datatype=DataType.BITS)]
        registers = [SimData(0, count=1, values=0, datatype=DataType.UINT16)]
        device = SimDevice(
            id=self.unit_id,
            simdata=(coils, inputs, registers, registers),
            action=self._on_access,
        )
        server = ModbusTcpServer(device, address=("127.0.0.1", self.port))
        await server.serve_forever(background=True)
        self._server = server

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            await asyncio.sleep(0)

    def value(self, coil: int) -> bool | None:
        """The coil's last written value (None: never written since the last start)."""
        return next((v for c, v in reversed(self.writes) if c == coil), None)

    async def __aenter__(self) -> CoilDevice:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class AgentRun:
    """One in-process agent run: ``start`` waits until it is ready, ``finish`` stops it and
    returns its final status."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.config = config_from_mapping(values, use_env=False)
        self.stop = asyncio.Event()
        self.task: asyncio.Task[AgentStatus] | None = None

    async def start(self) -> Agent:
        ready: asyncio.Future[Agent] = asyncio.get_running_loop().create_future()
        self.task = asyncio.create_task(
            run_agent(self.config, stop=self.stop, handle_signals=False, on_ready=ready)
        )
        return await asyncio.wait_for(ready, 15)

    async def finish(self) -> AgentStatus:
        self.stop.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, 30)
