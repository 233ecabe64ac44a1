"""A Modbus TCP server (pymodbus) exposing every ``[[modbus]]`` device of a scenario.

One TCP port, one unit id per device (as behind a serial gateway). Each register of the
scenario's map holds the latest sample of its signal, encoded per
:mod:`firmware_sim.servers.modbus_map`; addresses the map does not define answer exception 2
(illegal data address), and so do writes (the devices are read-only). The values are
refreshed on every request, after bringing the world to the simulated now, so two requests at
the same moment see the same plant as the OPC UA and MES servers do.

* Function codes 3 and 4 read the same registers (one shared block per device).
* A request touching a signal in a dropout answers exception 11 (gateway target device failed
  to respond): the sensor behind the PLC is silent.
* A request for a unit id the scenario does not define answers exception 4: pymodbus 3.16's
  simulator datastore has no "unknown device" path (see ``modbus_server.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.errors import ModbusServerError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario.model import ModbusDeviceSpec
from firmware_sim.servers.lifecycle import AsyncServer
from firmware_sim.servers.modbus_map import encode, is_counter

log = logging.getLogger(__name__)


async def _shutdown(server: ModbusTcpServer) -> None:
    shutdown: Callable[[], Awaitable[None]] = server.shutdown  # untyped in pymodbus
    await shutdown()


class ModbusPlantServer(AsyncServer):
    """``async with ModbusPlantServer(sim, port=0) as srv: ... srv.port``."""

    def __init__(self, sim: Simulation, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: ModbusTcpServer | None = None
        self.devices = {d.unit: d for d in sim.scenario.modbus_devices}
        self._counters = {
            reg.signal
            for d in self.devices.values()
            for reg in d.registers
            if is_counter(sim.scenario, reg.signal)
        }

    @property
    def port(self) -> int:
        if self._port is None:
            raise ModbusServerError(self.host, self._requested_port, "not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._server is not None

    def registers(self, unit: int) -> dict[int, int]:
        """Address -> register value of one device now (what a read would answer)."""
        self.sim.sync()
        out: dict[int, int] = {}
        for reg in self.devices[unit].registers:
            sample = self.sim.world.latest(reg.signal)
            value = sample.value if sample is not None and sample.value is not None else 0.0
            words = encode(reg, value, wrap=reg.signal in self._counters)
            out.update(zip(range(reg.address, reg.address + reg.width), words, strict=True))
        return out

    async def _on_access(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        device = self.devices[unit]
        world = self.sim.world
        values = self.registers(unit)
        for reg in device.registers:
            overlaps = reg.address < address + count and address < reg.address + reg.width
            sample = world.latest(reg.signal)
            if overlaps and sample is not None and sample.value is None:
                return ExcCodes.GATEWAY_NO_RESPONSE
        for addr, word in values.items():
            current_registers[addr - start_address] = word
        return None

    def _device(self, spec: ModbusDeviceSpec) -> SimDevice:
        return SimDevice(
            id=spec.unit,
            simdata=[
                SimData(
                    reg.address,
                    count=reg.width,
                    values=0,
                    datatype=DataType.REGISTERS,
                    readonly=True,
                )
                for reg in spec.registers
            ],
            action=partial(self._on_access, spec.unit),
        )

    async def start(self) -> None:
        """Bind and serve; :class:`ModbusServerError` if the port cannot be bound."""
        if self._server is not None:
            return
        if not self.devices:
            raise ModbusServerError(self.host, self._requested_port, "the scenario has no devices")
        devices = [self._device(d) for d in self.devices.values()]
        server = ModbusTcpServer(devices, address=(self.host, self._requested_port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise ModbusServerError(self.host, self._requested_port, str(exc)) from None
        sockets = getattr(server.transport, "sockets", None) or ()
        if not sockets:
            await _shutdown(server)
            raise ModbusServerError(self.host, self._requested_port, "listener has no socket")
        self._port = int(sockets[0].getsockname()[1])
        self._server = server
        log.info("modbus sim listening on %s:%d", self.host, self._port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await _shutdown(server)
            await asyncio.sleep(0)
