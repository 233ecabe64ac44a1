"""The OPC UA source against firmware_sim's OPC UA server (asyncua on both ends): subscriptions
and polling, qualities, and a server that dies and comes back (reconnect + re-subscribe)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from asyncua import ua

from edge_agent.config import OpcUaSourceConfig, SignalConfig
from edge_agent.sources import build_source
from edge_agent.sources.opcua import OpcUaSource, number_of, quality_of
from firmware_sim.clock import ManualClock
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import default_scenario
from firmware_sim.servers.opcua import NAMESPACE_URI, OpcUaPlantServer
from shared.messages import Quality, Reading

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = 1_767_600_000_000  # Monday 2026-01-05 08:00 UTC


@dataclass
class Plant:
    sim: Simulation
    clock: ManualClock
    server: OpcUaPlantServer


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def plant() -> AsyncIterator[Plant]:
    clock = ManualClock(start_ms=NOW)
    sim = Simulation(default_scenario(), seed=3, clock=clock)
    plant = Plant(sim, clock, OpcUaPlantServer(sim, port=0, update_s=3600))  # refreshed by hand
    await plant.server.start()
    yield plant
    await plant.server.stop()  # the last test may have replaced it


def source(url: str, mode: str, **signals: str) -> OpcUaSource:
    cfg = OpcUaSourceConfig.from_mapping(
        {
            "type": "opcua",
            "id": "ua",
            "url": url,
            "mode": mode,
            "publishing_interval_ms": 50,
            "timeout_s": 1.0,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.2,
        }
    )
    sigs = [
        SignalConfig.from_mapping({"id": sid, "source": "ua", "kind": "sensor", "node": node})
        for sid, node in signals.items()
    ]
    source = build_source(cfg, sigs)
    assert isinstance(source, OpcUaSource)
    return source


def values(readings: list[Reading]) -> dict[str, tuple[float | None, Quality]]:
    return {r.signal: (r.value, r.quality) for r in readings}


async def read_until(
    src: OpcUaSource, ok: Callable[[dict[str, tuple[float | None, Quality]]], bool]
) -> dict[str, tuple[float | None, Quality]]:
    """Read until ``ok``; the bound only stops a broken run from hanging."""
    deadline = time.monotonic() + 20
    while True:
        got = values(await src.read(NOW))
        if ok(got):
            return got
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)


async def test_subscription_follows_the_plant(plant: Plant) -> None:
    src = source(
        plant.server.endpoint,
        "subscription",
        count=plant.server.node_id("line3.count"),
        state=plant.server.node_id("line3.state_code"),
        total=f"nsu={NAMESPACE_URI};s=line3.good_total",  # namespace by URI
        text="ns=2;s=line3.state",  # a string: not a number
    )
    try:
        first = await read_until(src, lambda v: v["count"][1] == Quality.GOOD)
        assert first["text"] == (None, Quality.BAD)
        plant.clock.advance(3_600_000)
        await plant.server.refresh()
        line = plant.sim.world.line("line3")
        got = await read_until(src, lambda v: v["total"][0] == float(line.good_total))
        assert got["count"] == (float(line.good_counter), Quality.GOOD)
        assert got["state"] == (1.0, Quality.GOOD)  # running
        assert line.good_total > 0
    finally:
        await src.close()


async def test_polling_reads_the_current_values(plant: Plant) -> None:
    src = source(plant.server.endpoint, "poll", total=plant.server.node_id("line1.good_total"))
    try:
        plant.clock.advance(600_000)
        await plant.server.refresh()
        got = values(await src.read(NOW))
        assert got["total"] == (float(plant.sim.world.line("line1").good_total), Quality.GOOD)
        missing = source(plant.server.endpoint, "poll", x="ns=2;s=no.such.node")
        try:
            assert values(await missing.read(NOW))["x"] == (None, Quality.BAD)
        finally:
            await missing.close()
    finally:
        await src.close()


@pytest.mark.parametrize(
    ("code", "quality"),
    [
        (ua.StatusCodes.Good, Quality.GOOD),
        (ua.StatusCodes.UncertainLastUsableValue, Quality.UNCERTAIN),
        (ua.StatusCodes.BadNoCommunication, Quality.COMM_FAILURE),
        (ua.StatusCodes.BadNodeIdUnknown, Quality.BAD),
    ],
)
async def test_status_codes_map_to_qualities(code: Any, quality: Quality) -> None:
    assert quality_of(ua.StatusCode(code)) is quality


async def test_numbers() -> None:
    assert number_of(True) == 1.0
    assert number_of(7) == 7.0
    assert number_of(float("nan")) is None
    assert number_of("7") is None


async def test_server_dies_and_comes_back_resubscribed(plant: Plant) -> None:
    """Last in this module: it replaces the module's server by a new one on the same port."""
    server, port = plant.server, plant.server.port
    src = source(server.endpoint, "subscription", total=server.node_id("line3.good_total"))
    try:
        await read_until(src, lambda v: v["total"][1] == Quality.GOOD)
        await server.stop()
        await read_until(src, lambda v: v["total"][1] == Quality.COMM_FAILURE)
        assert src.last_error
        server = plant.server = OpcUaPlantServer(plant.sim, port=port, update_s=3600)
        await server.start()
        await read_until(src, lambda v: v["total"][1] == Quality.GOOD)
        assert src.connects == 2
        plant.clock.advance(3_600_000)  # a change after the restart comes by the new subscription
        await server.refresh()
        want = float(plant.sim.world.line("line3").good_total)
        await read_until(src, lambda v: v["total"][0] == want)
    finally:
        await src.close()
