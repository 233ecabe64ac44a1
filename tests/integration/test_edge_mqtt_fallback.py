"""MQTT 5 with automatic fallback to 3.1.1, against a real Mosquitto.

Mosquitto 2 speaks both versions, so it never refuses MQTT 5. To see the agent fall back for
real, the tests put :class:`RefusingProxy` in front of it: a real TCP server that plays a
3.1.1-only broker. **It fakes only the refusal**: an MQTT 5 CONNECT gets the 3.1.1 CONNACK
"unacceptable protocol version" (``20 02 00 01``) or, in ``close`` mode, a closed connection
without any CONNACK; a 3.1.1 CONNECT is forwarded to the real Mosquitto, and everything after
it is piped byte for byte both ways. Everything the agent does afterwards (CONNACK, birth,
telemetry at QoS 1, PUBACKs, subscriptions) happens with the real broker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from edge_agent.health import build_status
from firmware_sim.stack import MosquittoServer
from tests.edge_agent.support import AgentRun, CountingDevice, Recorder, agent_config, until

pytestmark = pytest.mark.integration

MQTT_V5, MQTT_V311 = 5, 4


class RefusingProxy:
    """A 3.1.1-only broker in front of a real one (see the module docstring)."""

    def __init__(self, broker: MosquittoServer, mode: Literal["connack", "close"]) -> None:
        self.broker = broker
        self.mode = mode
        self.levels: list[int] = []  # protocol level of every CONNECT seen, in order
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: asyncio.StreamWriter | None = None
        try:
            packet = await _read_packet(reader)
            assert packet[0] >> 4 == 1, "the first packet must be a CONNECT"
            level = _protocol_level(packet)
            self.levels.append(level)
            if level != MQTT_V311:
                if self.mode == "connack":
                    writer.write(b"\x20\x02\x00\x01")  # 3.1.1: unacceptable protocol version
                    await writer.drain()
                return
            up_reader, upstream = await asyncio.open_connection(self.broker.host, self.broker.port)
            self._writers.add(upstream)
            upstream.write(packet)
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self._writers.discard(w)
                    w.close()


async def _read_packet(reader: asyncio.StreamReader) -> bytes:
    """One MQTT control packet, fixed header included."""
    head = await reader.readexactly(1)
    length, multiplier, raw = 0, 1, b""
    while True:
        byte = await reader.readexactly(1)
        raw += byte
        length += (byte[0] & 0x7F) * multiplier
        multiplier *= 128
        if not byte[0] & 0x80:
            break
    return head + raw + await reader.readexactly(length)


def _protocol_level(connect: bytes) -> int:
    i = 1
    while connect[i] & 0x80:  # skip the remaining length
        i += 1
    i += 1
    name_length = int.from_bytes(connect[i : i + 2], "big")
    return connect[i + 2 + name_length]


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("mode", "v5_attempts"),
    [("connack", 1), ("close", 2)],  # a silent close must repeat before the agent falls back
)
async def test_auto_falls_back_to_311_remembers_it_and_delivers(
    mode: Literal["connack", "close"],
    v5_attempts: int,
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    site, gateway = unique_name("site"), unique_name("gw")
    recorder = Recorder(broker, site, gateway)
    proxy = RefusingProxy(broker, mode)
    await proxy.start()
    try:
        async with CountingDevice() as device:
            values = agent_config(
                site=site,
                gateway=gateway,
                broker=broker,
                device_port=device.port,
                spool_path=tmp_path / "spool.db",
            )
            values["broker"] = {"host": "127.0.0.1", "port": proxy.port, "reconnect_max_s": 1}
            run = AgentRun(values)
            assert run.config.broker.protocol == "auto"  # the default
            agent = await run.start()
            await until(lambda: agent.outbox.connected, 15, "a connection through the proxy")
            assert proxy.levels == [MQTT_V5] * v5_attempts + [MQTT_V311]
            publisher = agent.publisher
            assert publisher is not None
            assert publisher.version.version == "3.1.1"
            assert publisher.version.describe.startswith("3.1.1 (auto: fell back from 5")
            assert "fell back" in build_status(agent).connection.protocol
            # Data flows over 3.1.1 to the real broker (and its PUBACKs back).
            await until(lambda: len(recorder.snapshot()[0]) >= 3, 15, "telemetry on the broker")
            # A dropped connection reconnects straight with 3.1.1: remembered for the session.
            proxy.drop_connections()
            await until(lambda: len(proxy.levels) > v5_attempts + 1, 15, "a reconnect")
            await until(lambda: agent.outbox.connected, 15, "the reconnection")
            assert len(proxy.levels) >= v5_attempts + 2
            assert set(proxy.levels[v5_attempts:]) == {MQTT_V311}
            await run.finish()
    finally:
        await proxy.stop()
        recorder.close()


async def test_auto_speaks_5_with_a_broker_that_does_and_pinned_5_never_falls_back(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    async with CountingDevice() as device:
        values = agent_config(
            site=unique_name("site"),
            gateway=unique_name("gw"),
            broker=broker,
            device_port=device.port,
            spool_path=tmp_path / "a.db",
        )
        run = AgentRun(values)
        agent = await run.start()
        await until(lambda: agent.outbox.connected, 15, "connection")
        assert agent.publisher is not None
        assert agent.publisher.version.describe == "5 (auto)"
        await run.finish()

        proxy = RefusingProxy(broker, "connack")
        await proxy.start()
        try:
            values["broker"] = {
                "host": "127.0.0.1",
                "port": proxy.port,
                "protocol": "5",
                "reconnect_min_s": 1,
                "reconnect_max_s": 1,
            }
            values["spool"]["path"] = str(tmp_path / "b.db")
            run = AgentRun(values)
            agent = await run.start()
            await until(lambda: len(proxy.levels) >= 3, 15, "three refused connects")
            assert set(proxy.levels) == {MQTT_V5}
            assert not agent.outbox.connected
            assert agent.publisher is not None
            assert agent.publisher.version.describe == "5 (pinned)"
            await run.finish()
        finally:
            await proxy.stop()
