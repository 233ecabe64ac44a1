"""The simulated Modbus TCP server, probed with a real pymodbus client over loopback."""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from firmware_sim.errors import ModbusServerError
from firmware_sim.modbus_server import StockModbusServer, sensor_registers, serve
from firmware_sim.plant import StockParams, StockProcess
from firmware_sim.stack.ports import free_port

REPO = Path(__file__).resolve().parents[2]


def as_float(words: Sequence[int]) -> float:
    value: float = struct.unpack(">f", struct.pack(">HH", *words))[0]
    return value


def as_uint32(words: Sequence[int]) -> int:
    value: int = struct.unpack(">I", struct.pack(">HH", *words))[0]
    return value


def float32(value: float) -> float:
    return as_float(list(struct.unpack(">HH", struct.pack(">f", value))))


async def connect(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=1.0, retries=0, reconnect_delay=0)
    assert await client.connect()
    return client


@pytest.fixture
async def server() -> AsyncIterator[StockModbusServer]:
    # A long period: the value only changes when a test calls tick().
    async with StockModbusServer(StockProcess(seed=11), port=0, period_s=3600) as srv:
        yield srv


@pytest.fixture
async def client(server: StockModbusServer) -> AsyncIterator[AsyncModbusTcpClient]:
    c = await connect(server.port)
    yield c
    c.close()


def test_sensor_registers_layout() -> None:
    regs = sensor_registers(123.45)
    assert len(regs) == 4
    assert regs[:2] == [0x42F6, 0xE666]  # float32 123.45, "ABCD"
    assert as_uint32(regs[2:]) == 12345
    assert as_uint32(sensor_registers(0.004)[2:]) == 0
    assert as_uint32(sensor_registers(1e12)[2:]) == 2**32 - 1  # clamped, not wrapped
    assert as_uint32(sensor_registers(-5.0)[2:]) == 0


async def test_register_map(server: StockModbusServer, client: AsyncModbusTcpClient) -> None:
    value = server.value
    assert value > 0
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert not rr.isError()
    assert list(rr.registers) == list(server.registers)
    assert as_float(rr.registers[:2]) == float32(value)
    assert as_uint32(rr.registers[2:]) == round(value * 100)
    # The block is shared: input registers hold the same values.
    ir = await client.read_input_registers(0, count=4, device_id=1)
    assert list(ir.registers) == list(rr.registers)
    # Each half can be read on its own.
    scaled = await client.read_holding_registers(2, count=2, device_id=1)
    assert as_uint32(scaled.registers) == round(value * 100)


async def test_outside_the_map_and_writes_are_refused(client: AsyncModbusTcpClient) -> None:
    for address, count in [(4, 1), (3, 2), (100, 2)]:
        rr = await client.read_holding_registers(address, count=count, device_id=1)
        assert rr.isError()
        assert rr.exception_code == 2  # illegal data address
    wr = await client.write_register(0, 1, device_id=1)
    assert wr.isError()
    assert wr.exception_code == 2  # read-only


async def test_tick_updates_what_clients_read(
    server: StockModbusServer, client: AsyncModbusTcpClient
) -> None:
    plant = server.plant
    assert isinstance(plant, StockProcess)
    seen = set()
    for _ in range(5):
        value = server.tick()
        rr = await client.read_holding_registers(0, count=4, device_id=1)
        assert as_float(rr.registers[:2]) == float32(value)
        assert as_uint32(rr.registers[2:]) == round(value * 100)
        seen.add(value)
    assert plant.steps == 5
    assert len(seen) > 1


async def test_values_follow_the_plant_every_period() -> None:
    plant = StockProcess(StockParams(demand_per_s=20.0), seed=3)
    async with StockModbusServer(plant, period_s=0.02) as srv:
        client = await connect(srv.port)
        try:
            await asyncio.sleep(0.3)
            rr = await client.read_holding_registers(0, count=2, device_id=1)
            assert as_float(rr.registers) == float32(srv.value)
        finally:
            client.close()
    assert plant.steps >= 5
    stopped_at = plant.steps
    await asyncio.sleep(0.1)
    assert plant.steps == stopped_at  # no update after stop


async def test_given_port_and_port_conflicts() -> None:
    port = free_port()
    first = StockModbusServer(StockProcess(), port=port)
    with pytest.raises(ModbusServerError, match="not started"):
        _ = first.port
    async with first:
        assert first.port == port
        assert first.running
        second = StockModbusServer(StockProcess(), port=port)
        with pytest.raises(ModbusServerError) as exc:
            await second.start()
        assert exc.value.port == port
        assert not second.running
    assert not first.running


async def test_stop_closes_clients_and_restart_on_the_same_port() -> None:
    srv = StockModbusServer(StockProcess(seed=1), port=0)
    await srv.start()
    port = srv.port
    client = await connect(port)
    await srv.stop()
    await srv.stop()  # idempotent
    await asyncio.sleep(0.05)
    assert not client.connected
    assert not await client.connect()  # nothing listens any more
    again = StockModbusServer(StockProcess(seed=1), port=port)
    async with again:
        assert await client.connect()
        rr = await client.read_holding_registers(0, count=2, device_id=1)
        assert as_float(rr.registers) == float32(again.value)
    client.close()


async def test_serve_until_stopped() -> None:
    stop = asyncio.Event()
    ready: list[StockModbusServer] = []
    task = asyncio.create_task(
        serve("127.0.0.1", 0, StockProcess(), 0.05, on_ready=ready.append, stop=stop)
    )
    for _ in range(100):
        if ready:
            break
        await asyncio.sleep(0.01)
    (srv,) = ready
    client = await connect(srv.port)
    rr = await client.read_holding_registers(0, count=2, device_id=1)
    assert not rr.isError()
    client.close()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert not srv.running


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"period_s": 0}, "period_s"), ({"device_id": 0}, "device_id")]
)
def test_bad_arguments(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ModbusServerError, match=match):
        StockModbusServer(StockProcess(), **kwargs)  # type: ignore[arg-type]


def test_server_error_pickles() -> None:
    err = ModbusServerError("127.0.0.1", 5020, "address already in use")
    again = pickle.loads(pickle.dumps(err))
    assert (again.host, again.port, again.reason, str(again)) == (
        err.host,
        err.port,
        err.reason,
        str(err),
    )
