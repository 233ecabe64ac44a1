"""The MES HTTP API answers a real httpx client with the documented JSON, agreeing with the
model, and refuses what it does not serve with JSON errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sim_scenarios import DAY_MS, HOUR_MS, MONDAY

from firmware_sim.clock import ManualClock
from firmware_sim.errors import MesServerError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario import default_scenario
from firmware_sim.servers.mes import MesServer

LINE_KEYS = {
    "id", "state", "state_code", "reason", "sku", "order", "rate_per_h", "good_total",
    "scrap_total", "good_counter", "scrap_counter", "counter_bits",
}  # fmt: skip
ORDER_KEYS = {
    "id", "line", "sku", "quantity", "good", "scrap", "status", "day", "released_ms",
    "started_ms", "completed_ms",
}  # fmt: skip


@pytest.fixture
async def mes() -> AsyncIterator[tuple[MesServer, ManualClock, httpx.AsyncClient]]:
    clock = ManualClock(MONDAY + 5 * HOUR_MS)
    sim = Simulation(default_scenario(), seed=2, clock=clock)
    async with MesServer(sim) as server, httpx.AsyncClient(base_url=server.url + "/api/v1") as c:
        yield server, clock, c


async def test_lines_and_counts(mes: tuple[MesServer, ManualClock, httpx.AsyncClient]) -> None:
    server, clock, http = mes
    clock.advance(4 * HOUR_MS)
    body = (await http.get("/lines")).json()
    assert body["ts_ms"] == clock.now_ms()
    assert [line["id"] for line in body["lines"]] == ["line3", "line1"]
    world = server.sim.world
    for line in body["lines"]:
        assert set(line) == LINE_KEYS
        snap = world.line(line["id"])
        assert line["good_total"] == snap.good_total > 0
        assert line["state"] == snap.state.value
    one = (await http.get("/lines/line3")).json()
    assert one["counter_bits"] == 16
    counts = (await http.get("/counts", params={"line": "line3"})).json()["counts"]
    assert {c["sku"] for c in counts} == {"A-113", "B-220"}
    assert sum(c["good"] for c in counts) == world.line("line3").good_total


async def test_orders_follow_the_plan(
    mes: tuple[MesServer, ManualClock, httpx.AsyncClient],
) -> None:
    server, clock, http = mes
    clock.advance(DAY_MS)  # Tuesday 05:00: Monday's orders are done or carried over
    orders = (await http.get("/orders", params={"line": "line3"})).json()["orders"]
    assert [o["id"] for o in orders][:2] == ["PO-line3-20260105-01", "PO-line3-20260105-02"]
    assert all(set(o) == ORDER_KEYS for o in orders)
    first = (await http.get(f"/orders/{orders[0]['id']}")).json()
    assert first["sku"] == "A-113"
    assert first["quantity"] == 1200
    assert first["status"] in {"in_progress", "completed"}
    assert first["good"] == server.sim.world.orders.get(first["id"]).good  # type: ignore[union-attr]
    released = (await http.get("/orders", params={"status": "released"})).json()["orders"]
    assert {o["day"] for o in released} <= {"2026-01-06"}
    assert len((await http.get("/orders", params={"limit": 1})).json()["orders"]) == 1
    plan = (await http.get("/plan", params={"day": "2026-01-06"})).json()
    assert {"line": "line3", "sku": "A-113", "target": 1200} in plan["production"]
    saturday = (await http.get("/plan", params={"day": "2026-01-10"})).json()
    assert all(p["target"] == 0 for p in saturday["production"])
    assert {d["sku"] for d in plan["demand"]} == {"A-113", "B-220", "E-500", "C-310", "D-415"}


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/lines/line9", 404, "not_found"),
        ("/orders/PO-none", 404, "not_found"),
        ("/orders?status=late", 400, "bad_request"),
        ("/orders?limit=0", 400, "bad_request"),
        ("/orders?line=line9", 404, "not_found"),
        ("/plan?day=tomorrow", 400, "bad_request"),
        ("/nothing", 404, "not_found"),
    ],
)
async def test_errors_are_json(
    mes: tuple[MesServer, ManualClock, httpx.AsyncClient], path: str, status: int, code: str
) -> None:
    response = await mes[2].get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == code


async def test_other_methods_and_raw_protocol(
    mes: tuple[MesServer, ManualClock, httpx.AsyncClient],
) -> None:
    server, _, http = mes
    response = await http.post("/lines", json={"x": 1})
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"GET /api/v1/clock HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    await reader.readexactly(length)  # keep-alive: the next request on the same connection
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 400")
    writer.close()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(b"POST /api/v1/clock HTTP/1.1\r\nContent-Length: 999999\r\n\r\n")
    await writer.drain()
    assert (await reader.read()).startswith(b"HTTP/1.1 413")  # and the server closed
    writer.close()


async def test_port_in_use_and_not_started() -> None:
    sim = Simulation(default_scenario(), clock=ManualClock(MONDAY))
    async with MesServer(sim) as first:
        second = MesServer(sim, port=first.port)
        with pytest.raises(MesServerError, match=r"in use|address"):
            await second.start()
        with pytest.raises(MesServerError, match="not started"):
            _ = second.url
