"""The OPC UA server answers a real asyncua client, and at one simulated instant it agrees with
the MES and Modbus servers of the same simulation (accelerated time, one clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient
from sim_scenarios import HOUR_MS, MONDAY

from firmware_sim.clock import SimClock
from firmware_sim.errors import OpcUaServerError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import default_scenario, parse_scenario
from firmware_sim.scenario.parse import DEFAULT_SCENARIO
from firmware_sim.servers.mes import MesServer
from firmware_sim.servers.modbus import ModbusPlantServer
from firmware_sim.servers.opcua import NAMESPACE_URI, OpcUaPlantServer

pytestmark = pytest.mark.asyncio(loop_scope="module")
SPEED = 60.0


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Plant:
    real_s: FakeMonotonic
    sim: Simulation
    opcua: OpcUaPlantServer
    mes: MesServer
    modbus: ModbusPlantServer
    client: Client
    ns: int

    async def read(self, name: str) -> ua.DataValue:
        node = self.client.get_node(f"ns={self.ns};s={name}")
        dv: ua.DataValue = await node.read_data_value(raise_on_bad_status=False)
        return dv

    async def value(self, name: str) -> object:
        return (await self.read(name)).Value.Value

    async def later(self, real_seconds: float) -> None:
        self.real_s.now += real_seconds
        await self.opcua.refresh()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plant() -> AsyncIterator[Plant]:
    # A dropout on line3.vibration two simulated hours in: 8:00 + 2 h on a Monday.
    text = DEFAULT_SCENARIO.read_text() + (
        '\n[[faults]]\nkind = "dropout"\ntarget = "line3.vibration"\nat_h = 2\nduration_h = 1\n'
    )
    real_s = FakeMonotonic()
    clock = SimClock(MONDAY + 8 * HOUR_MS, speed=SPEED, monotonic=real_s)
    sim = Simulation(parse_scenario(text), seed=4, clock=clock)
    async with (
        OpcUaPlantServer(sim, update_s=3600) as opcua,  # updates only when a test refreshes
        MesServer(sim) as mes,
        ModbusPlantServer(sim) as modbus,
        Client(opcua.endpoint) as client,
    ):
        ns = await client.get_namespace_index(NAMESPACE_URI)
        yield Plant(real_s, sim, opcua, mes, modbus, client, ns)


async def test_nodes_match_the_model(plant: Plant) -> None:
    await plant.later(60)  # an hour of production
    world = plant.sim.world
    assert plant.ns == plant.opcua.namespace_index == 2
    assert plant.opcua.node_id("line3.count") == "ns=2;s=line3.count"
    for line_id in ("line3", "line1"):
        snap = world.line(line_id)
        assert await plant.value(f"{line_id}.count") == snap.good_counter
        assert await plant.value(f"{line_id}.scrap") == snap.scrap_counter
        assert await plant.value(f"{line_id}.good_total") == snap.good_total
        assert await plant.value(f"{line_id}.state") == snap.state.value
        assert await plant.value(f"{line_id}.rate") == snap.rate_per_h
        assert await plant.value(f"{line_id}.sku") == (snap.sku or "")
        assert await plant.value(f"{line_id}.order") == (snap.order or "")
    assert (await plant.read("line3.count")).Value.VariantType == ua.VariantType.UInt16
    assert (await plant.read("line1.count")).Value.VariantType == ua.VariantType.UInt32
    assert await plant.value("line3.state_code") == 1
    assert world.line("line3").good_total > 50
    assert await plant.value("plant.site") == "demo-plant"
    assert await plant.value("plant.speed") == SPEED


async def test_signal_nodes_carry_samples_with_simulated_timestamps(plant: Plant) -> None:
    await plant.later(1)
    latest = plant.sim.world.latest("wh2.a113.level")
    assert latest is not None
    dv = await plant.read("sig.wh2.a113.level")
    assert dv.Value.Value == latest.value
    assert dv.SourceTimestamp == datetime.fromtimestamp(latest.ts / 1000, UTC)
    assert dv.StatusCode.is_good()


async def test_a_dropout_is_a_bad_status(plant: Plant) -> None:
    start = plant.sim.world.start_ms + 2 * HOUR_MS
    plant.real_s.now += max(0.0, (start - plant.sim.clock.now_ms()) / 1000 / SPEED) + 10
    await plant.opcua.refresh()
    dv = await plant.read("sig.line3.vibration")
    assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
    assert dv.Value.Value is None
    await plant.later(3600 / SPEED + 10)  # past the hour of dropout
    assert (await plant.read("sig.line3.vibration")).StatusCode.is_good()


async def test_one_clock_for_every_server(plant: Plant) -> None:
    await plant.later(30)  # 30 real seconds: 30 simulated minutes
    now = plant.sim.clock.now_ms()
    stamp = await plant.value("plant.time")
    assert isinstance(stamp, datetime)
    assert round(stamp.replace(tzinfo=UTC).timestamp() * 1000) == now
    async with httpx.AsyncClient(base_url=plant.mes.url) as http:
        clock = (await http.get("/api/v1/clock")).json()
        assert clock["sim_time_ms"] == now
        assert clock["speed"] == SPEED
        line1 = (await http.get("/api/v1/lines/line1")).json()
    modbus = AsyncModbusTcpClient("127.0.0.1", port=plant.modbus.port, timeout=2, retries=0)
    await modbus.connect()
    try:
        rr = await modbus.read_holding_registers(2, count=2, device_id=2)  # line1.count, uint32
        sample = plant.sim.world.latest("line1.count")
    finally:
        modbus.close()
    counter = (rr.registers[0] << 16) | rr.registers[1]
    assert line1["good_counter"] == await plant.value("line1.count")
    assert sample is not None
    assert counter == sample.value  # the PLC's sample of the same counter at the same instant
    assert (
        abs(counter - line1["good_counter"]) <= 1
    )  # sampled on its 1 s grid: at most 1 piece apart
    plant.real_s.now += 10  # ten real seconds later, everyone is ten simulated minutes on
    await plant.opcua.refresh()
    async with httpx.AsyncClient(base_url=plant.mes.url) as http:
        assert (await http.get("/api/v1/clock")).json()["sim_time_ms"] == now + 600_000
    stamp = await plant.value("plant.time")
    assert isinstance(stamp, datetime)
    assert round(stamp.replace(tzinfo=UTC).timestamp() * 1000) == now + 600_000


async def test_subscriptions_see_each_change(plant: Plant) -> None:
    seen: list[object] = []

    class Handler:
        def datachange_notification(self, node: object, val: object, data: object) -> None:
            seen.append(val)

    sub = await plant.client.create_subscription(50, Handler())
    node = plant.client.get_node(f"ns={plant.ns};s=plant.time")
    await sub.subscribe_data_change(node)
    for _ in range(3):
        await plant.later(1)
        for _ in range(40):  # notifications come with the next publish cycle (50 ms)
            if len(set(seen)) >= 2:
                break
            await asyncio.sleep(0.05)
    await sub.delete()
    assert len(set(seen)) >= 2


async def test_a_taken_port_is_a_clear_error(plant: Plant) -> None:
    taken = OpcUaPlantServer(Simulation(default_scenario()), port=plant.opcua.port)
    with pytest.raises(OpcUaServerError, match=str(plant.opcua.port)):
        await taken.start()
    with pytest.raises(OpcUaServerError, match="not started"):
        _ = taken.endpoint
