"""An OPC UA server (asyncua) exposing the simulated production lines and signals.

Address space, under namespace URI :data:`NAMESPACE_URI` (index 2 on a fresh server; clients
should resolve it by URI), all node ids are strings:

* ``plant`` (object), with ``plant.time`` (DateTime, simulated now), ``plant.speed`` (Double)
  and ``plant.site`` (String);
* per line ``L`` an object ``L`` with ``L.count`` and ``L.scrap`` (the PLC's good and scrap
  counters: UInt16 for a 16-bit line, UInt32 for a 32-bit one; they roll over and can reset),
  ``L.good_total`` and ``L.scrap_total`` (UInt64, never reset), ``L.state`` (String:
  idle|running|planned_down|down), ``L.state_code`` (Int32: 0 idle, 1 running, 2 planned down,
  3 down), ``L.reason`` (String), ``L.rate`` (Double, pieces/h now; 0 when not running),
  ``L.sku`` and ``L.order`` (String, "" when none);
* per signal ``S`` a variable ``sig.S`` (Double): its latest sample; a dropout is status
  ``BadNoCommunication`` with a null value.

Values are written every ``update_s`` real seconds (and by :meth:`OpcUaPlantServer.refresh`),
only when they changed, with source and server timestamps in *simulated* time, so
subscriptions see every change. Security: none (a simulator on a trusted network).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from datetime import UTC, datetime
from typing import Any, Final, cast

from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.status_codes import StatusCodes

from firmware_sim.core.line import STATE_CODES, LineSnapshot
from firmware_sim.errors import OpcUaServerError
from firmware_sim.runtime import Simulation
from firmware_sim.servers.lifecycle import AsyncServer
from firmware_sim.stack.ports import free_port
from shared.messages import Quality

log = logging.getLogger(__name__)

NAMESPACE_URI: Final = "urn:flightdeck:firmware-sim"
PATH: Final = "/flightdeck/sim"
_BIND_ATTEMPTS: Final = 5
_V = ua.VariantType


def _line_values(s: LineSnapshot) -> dict[str, tuple[Any, ua.VariantType]]:
    counter = _V.UInt16 if s.counter_bits == 16 else _V.UInt32
    return {
        "count": (s.good_counter, counter),
        "scrap": (s.scrap_counter, counter),
        "good_total": (s.good_total, _V.UInt64),
        "scrap_total": (s.scrap_total, _V.UInt64),
        "state": (s.state.value, _V.String),
        "state_code": (STATE_CODES[s.state], _V.Int32),
        "reason": (s.reason, _V.String),
        "rate": (float(s.rate_per_h), _V.Double),
        "sku": (s.sku or "", _V.String),
        "order": (s.order or "", _V.String),
    }


def _stamp(t_ms: int) -> ua.DateTime:
    return cast(ua.DateTime, datetime.fromtimestamp(t_ms / 1000, UTC))


def _node(name: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(name), ua.Int16(idx))


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:  # only "in use" is certain; anything else asyncua will report
            return exc.errno != errno.EADDRINUSE
    return True


class OpcUaPlantServer(AsyncServer):
    """``async with OpcUaPlantServer(sim, port=0) as srv: Client(srv.endpoint)``."""

    def __init__(
        self,
        sim: Simulation,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        update_s: float = 0.1,
    ) -> None:
        if not update_s > 0:
            raise OpcUaServerError(host, port, f"update_s must be > 0, got {update_s!r}")
        self.sim = sim
        self.host = host
        self.update_s = update_s
        self._requested_port = port
        self._port: int | None = None
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}
        self._last: dict[str, Any] = {}
        self._updater: asyncio.Task[None] | None = None
        self.namespace_index = 0

    @property
    def port(self) -> int:
        if self._port is None:
            raise OpcUaServerError(self.host, self._requested_port, "not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """``opc.tcp://host:port/flightdeck/sim``."""
        return f"opc.tcp://{self.host}:{self.port}{PATH}"

    @property
    def node_ids(self) -> list[str]:
        """Every variable's string node id (``line3.count``, ``sig.wh2.a113.level``, ...)."""
        return list(self._nodes)

    def node_id(self, name: str) -> str:
        """The full node id text of a variable, e.g. ``ns=2;s=line3.count``."""
        return f"ns={self.namespace_index};s={name}"

    async def start(self) -> None:
        """Build the address space and listen; :class:`OpcUaServerError` if it cannot."""
        if self._server is not None:
            return
        if self._requested_port and not _bindable(self.host, self._requested_port):
            # Fail before the ~2 s it takes asyncua to build its standard address space.
            raise OpcUaServerError(self.host, self._requested_port, "address already in use")
        error = "no attempt"
        for _ in range(_BIND_ATTEMPTS if self._requested_port == 0 else 1):
            port = self._requested_port or free_port(self.host)
            server = await self._build(port)
            try:
                await server.start()
            except OSError as exc:  # the port was taken between probe and bind
                error = str(exc)
                continue
            self._server, self._port = server, port
            break
        else:
            raise OpcUaServerError(self.host, self._requested_port, error)
        await self.refresh()
        self._updater = asyncio.create_task(self._update_loop(), name="opcua-sim-update")
        log.info("opcua sim listening on %s", self.endpoint)

    async def _build(self, port: int) -> Server:
        server = Server()
        await server.init()
        server.set_endpoint(f"opc.tcp://{self.host}:{port}{PATH}")
        server.set_server_name("Flightdeck firmware-sim")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE_URI)
        self.namespace_index = idx
        self._nodes.clear()
        self._last.clear()
        objects = server.nodes.objects
        plant = await objects.add_object(_node("plant", idx), ua.QualifiedName("plant", idx))
        world = self.sim.world
        now = _stamp(world.t)
        for name, (value, vtype) in {
            "time": (now, _V.DateTime),
            "speed": (float(self.sim.speed), _V.Double),
            "site": (self.sim.scenario.site, _V.String),
        }.items():
            await self._add(plant, idx, f"plant.{name}", name, value=value, vtype=vtype)
        for line_id in world.lines:
            obj = await objects.add_object(_node(line_id, idx), ua.QualifiedName(line_id, idx))
            for name, (value, vtype) in _line_values(world.line(line_id)).items():
                await self._add(obj, idx, f"{line_id}.{name}", name, value=value, vtype=vtype)
        signals = await objects.add_folder(_node("sig", idx), ua.QualifiedName("signals", idx))
        for sig in self.sim.scenario.signals:
            await self._add(signals, idx, f"sig.{sig.id}", sig.id, value=0.0, vtype=_V.Double)
        return server

    async def _add(
        self, parent: Any, idx: int, node: str, name: str, *, value: Any, vtype: ua.VariantType
    ) -> None:
        var = await parent.add_variable(
            _node(node, idx), ua.QualifiedName(name, idx), ua.Variant(value, vtype)
        )
        self._nodes[node] = var.nodeid

    async def refresh(self) -> None:
        """Sync the world to now and write every changed value (the update loop does this)."""
        server = self._server
        if server is None:
            return
        t = self.sim.sync()
        stamp = _stamp(t)
        world = self.sim.world
        values: dict[str, tuple[Any, ua.VariantType]] = {"plant.time": (stamp, _V.DateTime)}
        for line_id in world.lines:
            for name, value in _line_values(world.line(line_id)).items():
                values[f"{line_id}.{name}"] = value
        for name, (value, vtype) in values.items():
            if self._last.get(name) != value:
                self._last[name] = value
                dv = ua.DataValue(
                    ua.Variant(value, vtype), SourceTimestamp=stamp, ServerTimestamp=stamp
                )
                await server.write_attribute_value(self._nodes[name], dv)
        for sig in self.sim.scenario.signals:
            sample = world.latest(sig.id)
            key = f"sig.{sig.id}"
            if sample is None or self._last.get(key) == (sample.ts, sample.value):
                continue
            self._last[key] = (sample.ts, sample.value)
            sample_stamp = _stamp(sample.ts)
            if sample.quality is Quality.GOOD and sample.value is not None:
                dv = ua.DataValue(
                    ua.Variant(sample.value, _V.Double),
                    SourceTimestamp=sample_stamp,
                    ServerTimestamp=stamp,
                )
            else:
                dv = ua.DataValue(
                    ua.Variant(None, _V.Null),
                    StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadNoCommunication)),
                    SourceTimestamp=sample_stamp,
                    ServerTimestamp=stamp,
                )
            await server.write_attribute_value(self._nodes[key], dv)

    async def _update_loop(self) -> None:
        while True:
            await asyncio.sleep(self.update_s)
            try:
                await self.refresh()
            except Exception:  # keep serving; the next update may succeed
                log.exception("opcua sim update failed")

    async def stop(self) -> None:
        """Stop updating and listening. Idempotent."""
        updater, self._updater = self._updater, None
        if updater is not None:
            updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await updater
        server, self._server = self._server, None
        if server is not None:
            await server.stop()
