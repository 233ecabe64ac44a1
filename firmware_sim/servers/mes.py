"""The simulated MES: production orders, counts, order status and the plan as JSON over HTTP.

Every request first brings the world to the simulated "now", so answers agree with the OPC UA
and Modbus servers of the same process at the same moment. The endpoints and JSON shapes are
documented in ``docs/simulator.md`` (section "MES HTTP API"); they are a stable interface for
the edge agent's HTTP source. All times are simulated ms since the epoch (``*_ms``), or null.
"""

from __future__ import annotations

from typing import Any, Final

from firmware_sim.core.calendar import day_of, iso_time
from firmware_sim.core.line import STATE_CODES, LineSnapshot
from firmware_sim.core.orders import OrderStatus, ProductionOrder
from firmware_sim.errors import MesServerError, UnknownEntityError
from firmware_sim.runtime import Simulation
from firmware_sim.servers.http import HttpError, JsonHttpServer, Request, route
from firmware_sim.servers.lifecycle import AsyncServer

API: Final = "/api/v1"
_ID: Final = r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"
MAX_ORDERS: Final = 1000


def line_json(s: LineSnapshot) -> dict[str, Any]:
    return {
        "id": s.id,
        "state": s.state.value,
        "state_code": STATE_CODES[s.state],
        "reason": s.reason,
        "sku": s.sku,
        "order": s.order,
        "rate_per_h": s.rate_per_h,
        "good_total": s.good_total,
        "scrap_total": s.scrap_total,
        "good_counter": s.good_counter,
        "scrap_counter": s.scrap_counter,
        "counter_bits": s.counter_bits,
    }


def order_json(o: ProductionOrder) -> dict[str, Any]:
    return {
        "id": o.id,
        "line": o.line,
        "sku": o.sku,
        "quantity": o.quantity,
        "good": o.good,
        "scrap": o.scrap,
        "status": o.status.value,
        "day": o.day,
        "released_ms": o.released_ms,
        "started_ms": o.started_ms,
        "completed_ms": o.completed_ms,
    }


class MesServer(AsyncServer):
    """``async with MesServer(sim, port=0) as mes: httpx.get(mes.url + "/api/v1/lines")``."""

    def __init__(self, sim: Simulation, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self._http = JsonHttpServer(
            [
                route("GET", f"{API}/clock", self._clock),
                route("GET", f"{API}/lines", self._lines),
                route("GET", f"{API}/lines/(?P<line>{_ID})", self._line),
                route("GET", f"{API}/orders", self._orders),
                route("GET", f"{API}/orders/(?P<order>{_ID})", self._order),
                route("GET", f"{API}/counts", self._counts),
                route("GET", f"{API}/plan", self._plan),
            ],
            host=host,
            port=port,
        )

    @property
    def port(self) -> int:
        if not self._http.running:
            raise MesServerError(self.host, self._http.port, "not started")
        return self._http.port

    @property
    def url(self) -> str:
        """``http://host:port`` (the API is under ``/api/v1``)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        if self._http.running:
            return
        try:
            await self._http.start()
        except OSError as exc:
            raise MesServerError(self.host, self._http.port, str(exc)) from None

    async def stop(self) -> None:
        await self._http.stop()

    # --- handlers ------------------------------------------------------------------------
    def _clock(self, _: Request) -> dict[str, Any]:
        t = self.sim.sync()
        return {
            "sim_time_ms": t,
            "sim_time": iso_time(t),
            "speed": self.sim.speed,
            "start_ms": self.sim.world.start_ms,
            "site": self.sim.scenario.site,
            "scenario": self.sim.scenario.name,
        }

    def _lines(self, _: Request) -> dict[str, Any]:
        t = self.sim.sync()
        world = self.sim.world
        return {"ts_ms": t, "lines": [line_json(world.line(name)) for name in world.lines]}

    def _line(self, req: Request) -> dict[str, Any]:
        t = self.sim.sync()
        try:
            snapshot = self.sim.world.line(req.params["line"])
        except UnknownEntityError as exc:
            raise HttpError(404, "not_found", str(exc)) from None
        return {"ts_ms": t, **line_json(snapshot)}

    def _orders(self, req: Request) -> dict[str, Any]:
        t = self.sim.sync()
        line = req.query.get("line")
        if line is not None and line not in self.sim.world.lines:
            raise HttpError(404, "not_found", f"unknown line {line!r}")
        status = None
        if "status" in req.query:
            try:
                status = OrderStatus(req.query["status"])
            except ValueError:
                choices = ", ".join(s.value for s in OrderStatus)
                raise HttpError(400, "bad_request", f"status must be one of {choices}") from None
        limit = _int_param(req, "limit", 100, 1, MAX_ORDERS)
        orders = self.sim.world.orders.orders(line=line, status=status)[-limit:]
        return {"ts_ms": t, "orders": [order_json(o) for o in orders]}

    def _order(self, req: Request) -> dict[str, Any]:
        t = self.sim.sync()
        order = self.sim.world.orders.get(req.params["order"])
        if order is None:
            raise HttpError(404, "not_found", f"unknown order {req.params['order']!r}")
        return {"ts_ms": t, **order_json(order)}

    def _counts(self, req: Request) -> dict[str, Any]:
        t = self.sim.sync()
        world = self.sim.world
        wanted = req.query.get("line")
        if wanted is not None and wanted not in world.lines:
            raise HttpError(404, "not_found", f"unknown line {wanted!r}")
        counts = [
            {"line": name, "sku": sku, "good": good, "scrap": line.scrap_by_sku[sku]}
            for name, line in world.lines.items()
            if wanted in (None, name)
            for sku, good in line.good_by_sku.items()
        ]
        return {"ts_ms": t, "counts": counts}

    def _plan(self, req: Request) -> dict[str, Any]:
        t = self.sim.sync()
        day = t
        if "day" in req.query:
            try:
                day = day_of(req.query["day"])
            except ValueError:
                raise HttpError(400, "bad_request", "day must be YYYY-MM-DD") from None
        plan = self.sim.world.plan.day(day)
        return {
            "ts_ms": t,
            "day": plan.day,
            "production": [{"line": ln, "sku": s, "target": n} for ln, s, n in plan.production],
            "demand": [
                {"warehouse": w, "sku": s, "planned": round(q, 3)} for w, s, q in plan.demand
            ],
        }


def _int_param(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise HttpError(400, "bad_request", f"{name} must be an integer {lo}..{hi}")
    return int(raw)
