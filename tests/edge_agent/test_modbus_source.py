"""The edge Modbus source against the real simulated server: reads, outages, recovery."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge_agent.config import ModbusSourceConfig, SignalConfig
from edge_agent.sources import Source, build_source
from edge_agent.sources.modbus import ModbusSource
from firmware_sim.modbus_server import StockModbusServer
from firmware_sim.plant import StockProcess
from firmware_sim.stack.ports import free_port
from shared.messages import Quality, Reading

NOW_MS = 1_700_000_000_000


def source_config(port: int, **overrides: Any) -> ModbusSourceConfig:
    values: dict[str, Any] = {
        "type": "modbus",
        "id": "plc1",
        "host": "127.0.0.1",
        "port": port,
        "unit_id": 1,
        "timeout_s": 0.5,
        "retries": 0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.2,
    }
    values.update(overrides)
    return ModbusSourceConfig.from_mapping(values)


def signal(signal_id: str, address: int, **overrides: Any) -> SignalConfig:
    values: dict[str, Any] = {
        "id": signal_id,
        "source": "plc1",
        "address": address,
        "kind": "stock_level",
        "unit": "pcs",
    }
    values.update(overrides)
    return SignalConfig.from_mapping(values)


SIGNALS = [
    signal("stock.float", 0),
    signal("stock.scaled", 2, data_type="uint32", scale=0.01),
    signal("stock.input", 0, register_type="input"),
]


def by_id(readings: list[Reading]) -> dict[str, Reading]:
    return {r.signal: r for r in readings}


async def read_until(
    source: ModbusSource, quality: Quality, timeout_s: float = 5.0
) -> list[Reading]:
    deadline = time.monotonic() + timeout_s
    while True:
        readings = await source.read(NOW_MS)
        if all(r.quality == quality for r in readings):
            return readings
        assert time.monotonic() < deadline, f"still {[r.quality for r in readings]}"
        await asyncio.sleep(0.02)


@pytest.fixture
async def server() -> AsyncIterator[StockModbusServer]:
    async with StockModbusServer(StockProcess(seed=21), port=free_port(), period_s=3600) as srv:
        yield srv


@pytest.fixture
async def source(server: StockModbusServer) -> AsyncIterator[ModbusSource]:
    src = ModbusSource(source_config(server.port), SIGNALS)
    yield src
    await src.close()


def test_signals_are_planned_into_one_request_per_register_type() -> None:
    src = ModbusSource(source_config(502), SIGNALS)  # no I/O before the first read
    assert [(b.register.value, b.start, b.count) for b in src.blocks] == [
        ("holding", 0, 4),
        ("input", 0, 2),
    ]
    assert src.signal_ids == ("stock.float", "stock.scaled", "stock.input")
    assert not src.connected


async def test_reads_match_the_plant_sensor(
    server: StockModbusServer, source: ModbusSource
) -> None:
    for _ in range(3):
        readings = await source.read(NOW_MS)
        assert [r.signal for r in readings] == list(source.signal_ids)
        assert all(r.quality == Quality.GOOD and r.ts == NOW_MS for r in readings)
        got = by_id(readings)
        expected = server.value
        assert got["stock.float"].value == pytest.approx(expected, rel=1e-6)  # float32
        assert got["stock.scaled"].value == pytest.approx(expected, abs=0.005)  # x100 integer
        assert got["stock.input"].value == got["stock.float"].value
        server.tick()
    assert source.connected


async def test_word_order_and_scaling_are_applied(server: StockModbusServer) -> None:
    signals = [
        signal("swapped", 0, word_order="little"),
        signal("percent", 2, data_type="uint32", scale=0.01, offset=-100.0),
        signal("high", 2, data_type="uint16"),
        signal("low", 3, data_type="uint16"),
    ]
    src = ModbusSource(source_config(server.port), signals)
    try:
        got = by_id(await src.read(NOW_MS))
    finally:
        await src.close()
    registers = server.registers
    assert got["percent"].value == pytest.approx(server.value - 100.0, abs=0.005)
    assert (got["high"].value, got["low"].value) == (registers[2], registers[3])
    assert got["swapped"].value != pytest.approx(server.value)  # the wrong order garbles it


async def test_exception_response_is_bad_not_a_failure_of_the_rest(
    server: StockModbusServer,
) -> None:
    signals = [signal("ok", 0), signal("missing", 10)]  # address 10 is outside the map
    src = ModbusSource(source_config(server.port), signals)
    try:
        got = by_id(await src.read(NOW_MS))
    finally:
        await src.close()
    assert got["ok"].quality == Quality.GOOD
    assert (got["missing"].quality, got["missing"].value) == (Quality.BAD, None)


async def test_server_down_gives_comm_failure_then_recovers() -> None:
    port = free_port()
    plant = StockProcess(seed=21)
    server = StockModbusServer(plant, port=port, period_s=3600)
    await server.start()
    source = ModbusSource(source_config(port), SIGNALS)
    try:
        assert all(r.quality == Quality.GOOD for r in await source.read(NOW_MS))

        await server.stop()
        for _ in range(3):  # never raises, never goes silent
            readings = await source.read(NOW_MS)
            assert [r.signal for r in readings] == list(source.signal_ids)
            assert all(r.quality == Quality.COMM_FAILURE and r.value is None for r in readings)
        assert not source.connected

        server = StockModbusServer(plant, port=port, period_s=3600)
        await server.start()
        readings = await read_until(source, Quality.GOOD)
        assert by_id(readings)["stock.float"].value == pytest.approx(server.value, rel=1e-6)
        assert source.connected
    finally:
        await source.close()
        await server.stop()


async def test_unreachable_device_backs_off() -> None:
    clock = [100.0]
    port = free_port()  # nothing listens here
    config = source_config(port, reconnect_min_s=1.0, reconnect_max_s=4.0)
    source = ModbusSource(config, SIGNALS, monotonic=lambda: clock[0])
    try:
        readings = await source.read(NOW_MS)
        assert all(r.quality == Quality.COMM_FAILURE for r in readings)
        assert source.connect_failures == 1
        await source.read(NOW_MS)  # within the backoff: no new attempt
        assert source.connect_failures == 1
        clock[0] += 1.0
        await source.read(NOW_MS)
        assert source.connect_failures == 2
        clock[0] += 1.0  # the backoff doubled to 2 s
        await source.read(NOW_MS)
        assert source.connect_failures == 2
        clock[0] += 1.0
        await source.read(NOW_MS)
        assert source.connect_failures == 3
        async with StockModbusServer(StockProcess(), port=port):
            clock[0] += 4.0  # the cap
            assert all(r.quality == Quality.GOOD for r in await source.read(NOW_MS))
    finally:
        await source.close()


async def test_build_source_and_the_protocol(server: StockModbusServer) -> None:
    src: Source = build_source(source_config(server.port), SIGNALS)
    assert isinstance(src, ModbusSource)
    readings = await src.read(NOW_MS)
    assert len(readings) == len(SIGNALS)
    await src.close()
    await src.close()  # idempotent


def test_signals_of_another_source_are_refused() -> None:
    with pytest.raises(ValueError, match="do not belong"):
        ModbusSource(source_config(502), [signal("x", 0, source="plc2")])
