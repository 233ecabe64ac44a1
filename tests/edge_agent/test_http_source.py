"""The HTTP/MES source against firmware_sim's MES server (and a small server of our own for the
answers the MES never gives: 5xx, not JSON, too large)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from edge_agent.config import HttpSourceConfig, SignalConfig
from edge_agent.sources import build_source
from edge_agent.sources.http import HttpSource
from edge_agent.sources.values import FieldNotFoundError, select, to_number
from firmware_sim.clock import ManualClock
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import default_scenario
from firmware_sim.servers.mes import MesServer
from firmware_sim.stack.ports import free_port
from shared.messages import Quality, Reading

NOW = 1_767_600_000_000  # Monday 2026-01-05 08:00 UTC


class Ticks:
    """A monotonic clock the test moves (for the backoff)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def source(url: str, *signals: dict[str, Any], clock: Ticks | None = None) -> HttpSource:
    cfg = HttpSourceConfig.from_mapping(
        {
            "type": "http",
            "id": "mes",
            "url": url,
            "timeout_s": 1.0,
            "reconnect_min_s": 1,
            "reconnect_max_s": 4,
            "max_bytes": 2048,
        }
    )
    sigs = [
        SignalConfig.from_mapping({"source": "mes", "kind": "production_count", **s})
        for s in signals
    ]
    return HttpSource(cfg, sigs, monotonic=clock or Ticks())


def by_id(readings: list[Reading]) -> dict[str, Reading]:
    return {r.signal: r for r in readings}


@pytest.fixture
async def mes() -> AsyncIterator[tuple[MesServer, Simulation, ManualClock]]:
    clock = ManualClock(start_ms=NOW)
    sim = Simulation(default_scenario(), seed=1, clock=clock)
    async with MesServer(sim, port=0) as server:
        yield server, sim, clock


async def test_fields_of_the_mes_line_document(
    mes: tuple[MesServer, Simulation, ManualClock],
) -> None:
    server, sim, clock = mes
    clock.advance(3_600_000)  # an hour of production
    src = source(
        f"{server.url}/api/v1/lines/line3",
        {"id": "good", "field": "good_total"},
        {"id": "state", "field": "state", "value_map": {"idle": 0, "running": 1, "down": 3}},
        {"id": "rate", "field": "/rate_per_h", "scale": 0.5},
        {"id": "nope", "field": "no.such.field"},
    )
    try:
        got = by_id(await src.read(NOW))
        line = sim.world.line("line3")
        assert got["good"] == Reading("good", NOW, float(line.good_total), Quality.GOOD)
        assert got["good"].value is not None
        assert got["good"].value > 0
        assert got["state"].value == {"idle": 0, "running": 1, "down": 3}[line.state.value]
        assert got["rate"].value == line.rate_per_h * 0.5
        assert got["nope"] == Reading("nope", NOW, None, Quality.BAD)
        assert src.last_error is not None
        assert "no.such.field" in src.last_error
    finally:
        await src.close()


async def test_order_lists_and_unknown_resources(
    mes: tuple[MesServer, Simulation, ManualClock],
) -> None:
    server, _sim, clock = mes
    clock.advance(3_600_000)
    orders = source(
        f"{server.url}/api/v1/orders?line=line3", {"id": "qty", "field": "orders.0.quantity"}
    )
    missing = source(f"{server.url}/api/v1/lines/line99", {"id": "x", "field": "good_total"})
    try:
        (qty,) = await orders.read(NOW)
        assert qty.quality == Quality.GOOD
        assert qty.value is not None
        assert qty.value > 0
        (x,) = await missing.read(NOW)  # 404: the server answered, the answer is unusable
        assert (x.value, x.quality) == (None, Quality.BAD)
    finally:
        await orders.close()
        await missing.close()


async def test_mes_down_gives_comm_failure_with_backoff_then_recovers() -> None:
    port = free_port()
    ticks = Ticks()
    sim = Simulation(default_scenario(), seed=1, clock=ManualClock(start_ms=NOW))
    src = source(
        f"http://127.0.0.1:{port}/api/v1/lines/line3",
        {"id": "good", "field": "good_total"},
        clock=ticks,
    )
    try:
        assert (await src.read(NOW))[0].quality == Quality.COMM_FAILURE  # nothing listens
        async with MesServer(sim, port=port):
            # still backing off: no request, but never silence
            assert (await src.read(NOW))[0].quality == Quality.COMM_FAILURE
            ticks.now += 1.0
            assert (await src.read(NOW))[0].quality == Quality.GOOD
    finally:
        await src.close()


async def _serve_raw(reply: bytes) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("status_line", "body", "quality"),
    [
        (b"HTTP/1.1 503 Service Unavailable", b"{}", Quality.COMM_FAILURE),
        (b"HTTP/1.1 200 OK", b"<html>maintenance</html>", Quality.BAD),
        (b"HTTP/1.1 200 OK", b'{"v": "' + b"x" * 5000 + b'"}', Quality.BAD),
        (b"HTTP/1.1 302 Found", b"", Quality.BAD),
    ],
)
async def test_unusable_answers(status_line: bytes, body: bytes, quality: Quality) -> None:
    reply = status_line + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
    server, port = await _serve_raw(reply)
    src = source(f"http://127.0.0.1:{port}/x", {"id": "v", "field": "v"})
    try:
        (r,) = await src.read(NOW)
        assert (r.value, r.quality) == (None, quality)
        assert src.last_error
    finally:
        await src.close()
        server.close()
        await server.wait_closed()


def test_selectors_and_conversions() -> None:
    doc = {"a": {"b/c": [1, {"d": "running"}]}, "t": True, "n": None}
    assert select(doc, "/a/b~1c/0") == 1
    assert select(doc, "a.b/c.1.d") == "running"
    assert select(doc, "/a/b~1c/-1/d") == "running"
    with pytest.raises(FieldNotFoundError):
        select(doc, "a.x")
    with pytest.raises(FieldNotFoundError):
        select(doc, "a.b/c.7")
    assert to_number(True, {}) == 1.0
    assert to_number("running", {"running": 2.0}) == 2.0
    assert to_number(" 12.5 ", {}) == 12.5
    assert to_number("NaN", {}) is None
    assert to_number(None, {}) is None
    assert to_number([1], {}) is None


def test_build_source_dispatches_on_type() -> None:
    cfg = HttpSourceConfig.from_mapping({"type": "http", "id": "mes", "url": "http://x/"})
    sig = SignalConfig.from_mapping({"id": "s", "source": "mes", "kind": "sensor", "field": "a"})
    assert isinstance(build_source(cfg, [sig]), HttpSource)
