"""The scenario's Modbus devices answer a real pymodbus client: every register holds its
signal's latest sample in the documented encoding, gaps and other units are refused."""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient
from sim_scenarios import HOUR_MS, MONDAY, small_scenario

from firmware_sim.clock import ManualClock
from firmware_sim.core.calendar import MINUTE_MS
from firmware_sim.errors import ModbusServerError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import default_scenario
from firmware_sim.scenario.model import RegisterSpec, RegisterType, WordOrder
from firmware_sim.servers.modbus import ModbusPlantServer
from firmware_sim.servers.modbus_map import decode, encode


@pytest.fixture
async def plant() -> AsyncIterator[tuple[ModbusPlantServer, ManualClock, AsyncModbusTcpClient]]:
    clock = ManualClock(MONDAY + 7 * HOUR_MS)
    sim = Simulation(default_scenario(), seed=9, clock=clock)
    async with ModbusPlantServer(sim) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()
        yield server, clock, client
        client.close()


def reg(kind: RegisterType, order: WordOrder = WordOrder.BIG, scale: float = 1.0) -> RegisterSpec:
    return RegisterSpec("x", 0, kind, order, scale)


def test_encoding_layouts() -> None:
    assert encode(reg(RegisterType.FLOAT32), 123.45) == [0x42F6, 0xE666]  # "ABCD"
    assert encode(reg(RegisterType.FLOAT32, WordOrder.LITTLE), 123.45) == [0xE666, 0x42F6]
    assert encode(reg(RegisterType.UINT32, scale=100), 123.45) == [0, 12345]
    assert encode(reg(RegisterType.UINT32, WordOrder.LITTLE), 70_000) == [70_000 - 65_536, 1]
    assert encode(reg(RegisterType.INT16, scale=10), -5.25) == [
        struct.unpack(">H", struct.pack(">h", -52))[0]
    ]
    assert encode(reg(RegisterType.UINT16), 70_000) == [65_535]  # a level is clamped ...
    assert encode(reg(RegisterType.UINT16), 70_000, wrap=True) == [70_000 - 65_536]  # a count wraps
    assert encode(reg(RegisterType.INT32), -1e12) == [0x8000, 0]
    assert math.isnan(
        decode(reg(RegisterType.FLOAT32), encode(reg(RegisterType.FLOAT32), math.inf))
    )


@given(
    st.sampled_from(list(RegisterType)),
    st.sampled_from(list(WordOrder)),
    st.floats(-30_000, 30_000, allow_nan=False),
)
def test_decode_inverts_encode(kind: RegisterType, order: WordOrder, value: float) -> None:
    r = reg(kind, order)
    words = encode(r, value)
    assert len(words) == r.width
    assert all(0 <= w <= 0xFFFF for w in words)
    back = decode(r, words)
    if kind is RegisterType.FLOAT32:
        assert back == pytest.approx(value, rel=1e-6, abs=1e-3)
    elif kind in {RegisterType.UINT16, RegisterType.UINT32}:
        assert back == max(0, round(value))
    else:
        assert back == round(value)


async def test_every_register_holds_its_signal(
    plant: tuple[ModbusPlantServer, ManualClock, AsyncModbusTcpClient],
) -> None:
    server, clock, client = plant
    clock.advance(HOUR_MS)
    checked = 0
    for unit, device in server.devices.items():
        for r in device.registers:
            rr = await client.read_holding_registers(r.address, count=r.width, device_id=unit)
            assert not rr.isError(), (unit, r)
            sample = server.sim.world.latest(r.signal)
            assert sample is not None
            assert sample.value is not None
            assert sample.ts == clock.now_ms()
            expected = (
                sample.value
                if r.type is RegisterType.FLOAT32
                else round(sample.value * r.scale) / r.scale
            )
            assert decode(r, list(rr.registers)) == pytest.approx(expected, rel=1e-6)
            checked += 1
    assert checked == 10
    whole = await client.read_input_registers(0, count=8, device_id=1)  # FC 4, same block
    assert list(whole.registers) == [server.registers(1)[a] for a in range(8)]


async def test_gaps_writes_and_unknown_units_are_refused(
    plant: tuple[ModbusPlantServer, ManualClock, AsyncModbusTcpClient],
) -> None:
    _, _, client = plant
    assert (await client.read_holding_registers(6, count=1, device_id=2)).exception_code == 2
    assert (await client.read_holding_registers(0, count=9, device_id=1)).exception_code == 2
    assert (await client.write_register(0, 1, device_id=1)).exception_code == 2
    assert (await client.read_holding_registers(0, count=1, device_id=9)).exception_code == 4


async def test_a_dropout_answers_gateway_no_response() -> None:
    extra = '\n[[faults]]\nkind = "dropout"\ntarget = "l1.count"\nat_h = 1\nduration_h = 1\n'
    clock = ManualClock(MONDAY)
    sim = Simulation(small_scenario(extra), seed=1, clock=clock)
    async with ModbusPlantServer(sim) as server:
        client = AsyncModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        assert await client.connect()
        clock.advance(HOUR_MS + MINUTE_MS)
        assert (await client.read_holding_registers(2, count=1, device_id=3)).exception_code == 11
        assert (await client.read_holding_registers(0, count=3, device_id=3)).exception_code == 11
        ok = await client.read_holding_registers(0, count=2, device_id=3)  # p1.level is fine
        assert not ok.isError()
        clock.advance(HOUR_MS)
        assert not (await client.read_holding_registers(2, count=1, device_id=3)).isError()
        client.close()


async def test_port_in_use_is_a_clear_error(
    plant: tuple[ModbusPlantServer, ManualClock, AsyncModbusTcpClient],
) -> None:
    server = plant[0]
    other = ModbusPlantServer(server.sim, port=server.port)
    with pytest.raises(ModbusServerError, match=str(server.port)):
        await other.start()
