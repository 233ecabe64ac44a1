"""A Modbus TCP server (pymodbus, asyncio) exposing one simulated stock-level sensor.

Register map (one device, unit id ``device_id``, default 1):

========  =====  ===========================================================================
address   count  content
========  =====  ===========================================================================
0..1      2      sensor value as an IEEE 754 float32, big-endian bytes and words ("ABCD":
                 register 0 holds the most significant word)
2..3      2      the same value x100, rounded, as an unsigned 32-bit integer, big-endian
                 words ("ABCD"), clamped to 0..4294967295 (e.g. 123.45 pieces -> 12345)
========  =====  ===========================================================================

* Read them with function code 3 (read holding registers). The simulated device has a single
  shared register block, so function code 4 (read input registers) returns the same values.
* Addresses 4 and up answer exception 2 (illegal data address); so do writes (the device is
  read-only).
* The registers change every ``period_s`` seconds: the plant steps by ``period_s`` and the
  sensor is read once. Requests between two updates see the same value.
* A request for another unit id answers exception 4 (server device failure): pymodbus 3.16's
  simulator datastore has no "unknown device" path.

Built on pymodbus' ``SimDevice``/``SimData`` datastore, because ``ModbusServerContext`` and
``ModbusSequentialDataBlock`` are deprecated in 3.x (removed in 4). The live values are
copied into the request's register view by the device ``action`` hook, so updating them needs
no write path into the (read-only) registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from firmware_sim.errors import ModbusServerError
from firmware_sim.servers.lifecycle import AsyncServer

log = logging.getLogger(__name__)

FLOAT_ADDRESS: Final = 0
SCALED_ADDRESS: Final = 2
SCALED_FACTOR: Final = 100
REGISTER_COUNT: Final = 4
_UINT32_MAX: Final = 2**32 - 1


class SensorPlant(Protocol):
    """What the server needs from a plant: advance it, and read its sensor."""

    def step(self, dt_s: float) -> float: ...

    def sensor_reading(self) -> float: ...


def sensor_registers(value: float) -> list[int]:
    """The four registers of the map above for one sensor value (pure)."""
    float_words = struct.unpack(">HH", struct.pack(">f", value))
    scaled = value * SCALED_FACTOR
    scaled_int = 0 if not math.isfinite(scaled) else min(max(round(scaled), 0), _UINT32_MAX)
    scaled_words = struct.unpack(">HH", struct.pack(">I", scaled_int))
    return [*float_words, *scaled_words]


async def _shutdown(server: ModbusTcpServer) -> None:
    shutdown: Callable[[], Awaitable[None]] = server.shutdown  # untyped in pymodbus
    await shutdown()


class StockModbusServer(AsyncServer):
    """One plant behind a Modbus TCP listener; ``async with`` or :meth:`start`/:meth:`stop`.

    ``port=0`` binds a free port chosen by the kernel; :attr:`port` tells which after start.
    The plant advances only while the server runs (or when :meth:`tick` is called).
    """

    def __init__(
        self,
        plant: SensorPlant,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        period_s: float = 1.0,
        device_id: int = 1,
    ) -> None:
        if not (math.isfinite(period_s) and period_s > 0):
            raise ModbusServerError(host, port, f"period_s must be > 0, got {period_s!r}")
        if not 1 <= device_id <= 247:
            raise ModbusServerError(host, port, f"device_id must be 1..247, got {device_id}")
        self.plant = plant
        self.host = host
        self.period_s = period_s
        self.device_id = device_id
        self._requested_port = port
        self._port: int | None = None
        self._server: ModbusTcpServer | None = None
        self._updater: asyncio.Task[None] | None = None
        self._value = plant.sensor_reading()
        self._registers = sensor_registers(self._value)

    @property
    def port(self) -> int:
        """The bound TCP port (only meaningful once started)."""
        if self._port is None:
            raise ModbusServerError(self.host, self._requested_port, "not started")
        return self._port

    @property
    def value(self) -> float:
        """The sensor value the registers currently hold."""
        return self._value

    @property
    def registers(self) -> tuple[int, ...]:
        return tuple(self._registers)

    @property
    def running(self) -> bool:
        return self._server is not None

    def tick(self) -> float:
        """Advance the plant by one period, read the sensor, publish it; return the value."""
        self.plant.step(self.period_s)
        self._value = self.plant.sensor_reading()
        self._registers = sensor_registers(self._value)
        return self._value

    async def _on_access(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        # pymodbus' SimDevice action hook: runs on every permitted access, before the response
        # is built from ``current_registers`` (the device's whole block, in place).
        offset = FLOAT_ADDRESS - start_address
        current_registers[offset : offset + REGISTER_COUNT] = self._registers
        return None

    def _device(self) -> SimDevice:
        return SimDevice(
            id=self.device_id,
            simdata=[
                SimData(FLOAT_ADDRESS, values=0.0, datatype=DataType.FLOAT32, readonly=True),
                SimData(SCALED_ADDRESS, values=0, datatype=DataType.UINT32, readonly=True),
            ],
            action=self._on_access,
        )

    async def start(self) -> None:
        """Bind and serve; raises :class:`ModbusServerError` if the port cannot be bound."""
        if self._server is not None:
            return
        server = ModbusTcpServer(self._device(), address=(self.host, self._requested_port))
        # ``background=True`` returns once listening. A bind failure surfaces only as
        # RuntimeError("Could not start listen ..."); pymodbus logs the OSError itself.
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            raise ModbusServerError(self.host, self._requested_port, str(exc)) from None
        listener = server.transport
        sockets = getattr(listener, "sockets", None) or ()
        if not sockets:
            await _shutdown(server)
            raise ModbusServerError(self.host, self._requested_port, "listener has no socket")
        self._port = int(sockets[0].getsockname()[1])
        self._server = server
        self._updater = asyncio.create_task(self._update_loop(), name="modbus-sim-update")
        log.info("modbus sim listening on %s:%d (device %d)", self.host, self._port, self.device_id)

    async def stop(self) -> None:
        """Stop updating, close the listener and every client connection. Idempotent."""
        updater, self._updater = self._updater, None
        if updater is not None:
            updater.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await updater
        server, self._server = self._server, None
        if server is not None:
            await _shutdown(server)
            # Let the transports run their close callbacks before the caller moves on (a
            # restart on the same port, or the end of the event loop).
            await asyncio.sleep(0)

    async def _update_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.period_s
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            self.tick()
            next_at += self.period_s
            if next_at < loop.time():  # fell behind (suspended?): skip, don't burst
                next_at = loop.time() + self.period_s


async def serve(
    host: str,
    port: int,
    plant: SensorPlant,
    period_s: float,
    *,
    device_id: int = 1,
    on_ready: Callable[[StockModbusServer], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Serve ``plant`` until ``stop`` is set (or the task is cancelled)."""
    server = StockModbusServer(plant, host=host, port=port, period_s=period_s, device_id=device_id)
    async with server:
        if on_ready is not None:
            on_ready(server)
        if stop is None:
            await asyncio.Event().wait()  # until cancelled
        else:
            await stop.wait()
