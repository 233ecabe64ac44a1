"""Modbus TCP source: a pure core (read planning, register decoding) and a thin pymodbus shell.

* :func:`plan_reads` groups signals into as few requests as possible: signals of one register
  type whose registers are adjacent (or at most ``max_gap`` apart) are read in one request of
  up to ``max_registers`` registers.
* :func:`decode_value` / :func:`encode_value` convert between 16-bit registers and
  float32/uint32/int32/int16/uint16 values; 32-bit values honour the word order, bytes within
  a word are big-endian as Modbus defines.
* :class:`ModbusSource` owns one ``AsyncModbusTcpClient`` and reconnects by itself with an
  exponential backoff (pymodbus' own background reconnect is disabled so that a source has no
  task running between reads). It never raises for a communication failure: unreachable
  device -> ``COMM_FAILURE`` readings; an exception response from the device -> ``BAD``
  (``COMM_FAILURE`` for the gateway exceptions 10/11: the device behind the gateway is gone).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ExceptionResponse, ModbusPDU

from edge_agent.config import (
    REGISTER_WIDTH,
    DataType,
    ModbusSourceConfig,
    RegisterType,
    SignalConfig,
    WordOrder,
)
from edge_agent.errors import RegisterDecodeError
from edge_agent.sources.base import check_signals, failed_readings
from shared.codec import make_reading
from shared.messages import Quality, Reading

log = logging.getLogger(__name__)

#: Most registers one read request (function code 3 or 4) may ask for.
MAX_READ_REGISTERS: Final = 125

_STRUCT: Final = {
    DataType.FLOAT32: ">f",
    DataType.UINT32: ">I",
    DataType.INT32: ">i",
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
}
# Modbus exception codes 10 and 11: a gateway could not reach the device behind it.
_GATEWAY_EXCEPTIONS: Final = frozenset({0x0A, 0x0B})


# -- pure core ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModbusPoint:
    """Where one signal lives on the device and how to turn its registers into a value."""

    signal: str
    register: RegisterType
    address: int
    data_type: DataType
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    offset: float = 0.0

    @property
    def width(self) -> int:
        return REGISTER_WIDTH[self.data_type]

    @property
    def end(self) -> int:
        """One past the last register of the value."""
        return self.address + self.width

    @classmethod
    def from_signal(cls, signal: SignalConfig) -> ModbusPoint:
        if signal.address is None:
            raise ValueError(f"signal {signal.id!r} has no Modbus address")
        return cls(
            signal=signal.id,
            register=signal.register_type,
            address=signal.address,
            data_type=signal.data_type,
            word_order=signal.word_order,
            scale=signal.scale,
            offset=signal.offset,
        )


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: ``count`` registers of ``register`` type from ``start``."""

    register: RegisterType
    start: int
    count: int
    points: tuple[ModbusPoint, ...]

    def registers_of(self, point: ModbusPoint, registers: Sequence[int]) -> Sequence[int]:
        """The slice of this block's response that holds ``point``."""
        first = point.address - self.start
        return registers[first : first + point.width]


def plan_reads(
    points: Iterable[ModbusPoint], *, max_registers: int = MAX_READ_REGISTERS, max_gap: int = 0
) -> list[ReadBlock]:
    """Group points into read requests: per register type, by address, adjacent ones joined.

    Two points share a request when the second starts at most ``max_gap`` registers after the
    first one's end (0: only directly adjacent or overlapping) and the request stays within
    ``max_registers``. Blocks come out holding registers first, then by address.
    """
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_READ_REGISTERS}, got {max_registers}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    order = {RegisterType.HOLDING: 0, RegisterType.INPUT: 1}
    ordered = sorted(points, key=lambda p: (order[p.register], p.address, p.width, p.signal))
    blocks: list[ReadBlock] = []
    members: list[ModbusPoint] = []
    start = end = 0

    def emit() -> None:
        if members:
            blocks.append(ReadBlock(members[0].register, start, end - start, tuple(members)))

    for point in ordered:
        if point.width > max_registers:
            raise ValueError(f"{point.signal}: {point.width} registers exceed {max_registers}")
        joins = (
            members
            and point.register == members[0].register
            and point.address <= end + max_gap
            and max(end, point.end) - start <= max_registers
        )
        if joins:
            end = max(end, point.end)
            members.append(point)
        else:
            emit()
            members = [point]
            start, end = point.address, point.end
    emit()
    return blocks


def decode_value(
    registers: Sequence[int], data_type: DataType, word_order: WordOrder = WordOrder.BIG
) -> float:
    """The value held by ``registers`` (as many as the type needs: 1 or 2)."""
    width = REGISTER_WIDTH[data_type]
    if len(registers) != width:
        raise RegisterDecodeError(data_type, registers, f"needs {width} register(s)")
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise RegisterDecodeError(data_type, registers, "registers are 16-bit (0..65535)")
    words = registers if word_order is WordOrder.BIG else list(reversed(registers))
    raw = struct.pack(f">{width}H", *words)
    value: float = struct.unpack(_STRUCT[data_type], raw)[0]
    return value


def encode_value(
    value: float, data_type: DataType, word_order: WordOrder = WordOrder.BIG
) -> list[int]:
    """The registers a device holding ``value`` presents (inverse of :func:`decode_value`)."""
    try:
        raw = struct.pack(_STRUCT[data_type], value)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit a {data_type}: {exc}") from None
    words = list(struct.unpack(f">{REGISTER_WIDTH[data_type]}H", raw))
    if word_order is WordOrder.LITTLE:
        words.reverse()
    return words


def scale_value(raw: float, scale: float, offset: float) -> float:
    """Engineering value from a raw register value: ``raw * scale + offset``."""
    return raw * scale + offset


# -- shell ----------------------------------------------------------------------------------


class ModbusSource:
    """Reads a set of signals from one Modbus TCP device; see the module docstring."""

    def __init__(
        self,
        config: ModbusSourceConfig,
        signals: Sequence[SignalConfig],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_signals(config.id, signals)
        self.config = config
        self._monotonic = monotonic
        points = [ModbusPoint.from_signal(s) for s in signals]
        self.blocks = plan_reads(
            points, max_registers=config.max_block_registers, max_gap=config.max_gap
        )
        self.signal_ids: tuple[str, ...] = tuple(p.signal for p in points)
        self._client: AsyncModbusTcpClient | None = None
        self._next_connect_at = 0.0
        self._backoff_s = config.reconnect_min_s
        self._up: bool | None = None  # last known link state, to log transitions only
        self.connect_failures = 0
        self.comm_failures = 0  # reads that lost the link mid-way

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def read(self, now_ms: int) -> list[Reading]:
        client = await self._connected_client()
        if client is None:
            return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
        readings: dict[str, Reading] = {}
        for index, block in enumerate(self.blocks):
            try:
                response = await self._request(client, block)
            except (ModbusException, OSError, TimeoutError) as exc:
                self._link_lost(exc)
                for rest in self.blocks[index:]:
                    for point in rest.points:
                        readings[point.signal] = make_reading(
                            point.signal, now_ms, None, Quality.COMM_FAILURE
                        )
                break
            readings.update(self._decode_block(block, response, now_ms))
        return [readings[signal] for signal in self.signal_ids]

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- internals ----------------------------------------------------------------------

    async def _connected_client(self) -> AsyncModbusTcpClient | None:
        if self._client is None:
            # pymodbus clients need a running event loop at construction: build lazily.
            # reconnect_delay=0 disables pymodbus' background reconnect task; we reconnect
            # here, on the caller's schedule, with our own backoff.
            self._client = AsyncModbusTcpClient(
                self.config.host,
                port=self.config.port,
                timeout=self.config.timeout_s,
                retries=self.config.retries,
                reconnect_delay=0,
                name=f"modbus:{self.config.id}",
            )
        client = self._client
        if client.connected:
            return client
        now = self._monotonic()
        if now < self._next_connect_at:
            return None
        if await client.connect():
            self._backoff_s = self.config.reconnect_min_s
            if self._up is not True:
                log.info(
                    "modbus source %s: connected to %s:%d",
                    self.id,
                    self.config.host,
                    self.config.port,
                )
            self._up = True
            return client
        client.close()
        self.connect_failures += 1
        self._next_connect_at = now + self._backoff_s
        if self._up is not False:
            log.warning(
                "modbus source %s: cannot connect to %s:%d; retrying with backoff up to %.1f s",
                self.id,
                self.config.host,
                self.config.port,
                self.config.reconnect_max_s,
            )
        self._up = False
        self._backoff_s = min(self._backoff_s * 2, self.config.reconnect_max_s)
        return None

    async def _request(self, client: AsyncModbusTcpClient, block: ReadBlock) -> ModbusPDU:
        unit = self.config.unit_id
        if block.register is RegisterType.HOLDING:
            return await client.read_holding_registers(
                block.start, count=block.count, device_id=unit
            )
        return await client.read_input_registers(block.start, count=block.count, device_id=unit)

    def _link_lost(self, exc: BaseException) -> None:
        """Drop the connection (it may be half-open); the next read reconnects at once."""
        self.comm_failures += 1
        if self._client is not None:
            self._client.close()
        self._next_connect_at = self._monotonic()
        if self._up is not False:
            log.warning("modbus source %s: link lost: %s", self.id, exc)
        self._up = False

    def _decode_block(
        self, block: ReadBlock, response: ModbusPDU, now_ms: int
    ) -> dict[str, Reading]:
        if isinstance(response, ExceptionResponse) or response.isError():
            code = getattr(response, "exception_code", None)
            quality = Quality.COMM_FAILURE if code in _GATEWAY_EXCEPTIONS else Quality.BAD
            log.debug(
                "modbus source %s: exception %s for %s %d+%d",
                self.id,
                code,
                block.register,
                block.start,
                block.count,
            )
            return {p.signal: make_reading(p.signal, now_ms, None, quality) for p in block.points}
        registers: list[int] = list(getattr(response, "registers", []))
        out: dict[str, Reading] = {}
        for point in block.points:
            try:
                raw = decode_value(
                    block.registers_of(point, registers), point.data_type, point.word_order
                )
            except RegisterDecodeError as exc:  # short or malformed response
                log.debug("modbus source %s: %s: %s", self.id, point.signal, exc)
                out[point.signal] = make_reading(point.signal, now_ms, None, Quality.BAD)
                continue
            value = scale_value(raw, point.scale, point.offset)
            # make_reading turns NaN/Inf (a float32 NaN from the device) into BAD/null.
            out[point.signal] = make_reading(point.signal, now_ms, value, Quality.GOOD)
        return out
