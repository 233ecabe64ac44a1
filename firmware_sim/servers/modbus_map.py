"""Modbus register encoding of signal values, and the printable register map of a scenario.

Pure functions, tested without a server. A register holds ``value x scale``:

* ``float32``: IEEE 754 single, two registers;
* ``uint32``/``int32``: rounded, two registers; ``uint16``/``int16``: rounded, one register;
* 32-bit values in either word order: ``big`` = most significant word first ("ABCD", the
  Modbus convention), ``little`` = least significant word first ("CDAB"); bytes within a word
  are always big-endian;
* integers of counter signals wrap modulo the register width (a 32-bit count in a 16-bit
  register shows its low 16 bits, as a PLC's truncating move does); other integers are clamped
  to the type's range (a level never wraps to zero).
"""

from __future__ import annotations

import math
import struct
from typing import Final

from firmware_sim.scenario.model import (
    ModbusDeviceSpec,
    RegisterSpec,
    RegisterType,
    Scenario,
    SensorType,
    WordOrder,
)

_INT_RANGE: Final = {
    RegisterType.UINT32: (0, 2**32 - 1),
    RegisterType.INT32: (-(2**31), 2**31 - 1),
    RegisterType.UINT16: (0, 2**16 - 1),
    RegisterType.INT16: (-(2**15), 2**15 - 1),
}
_PACK: Final = {
    RegisterType.UINT32: ">I",
    RegisterType.INT32: ">i",
    RegisterType.UINT16: ">H",
    RegisterType.INT16: ">h",
}


def encode(reg: RegisterSpec, value: float, *, wrap: bool = False) -> list[int]:
    """The registers of ``reg`` holding ``value`` (see the module docstring)."""
    scaled = value * reg.scale
    if reg.type is RegisterType.FLOAT32:
        raw = struct.pack(">f", scaled if math.isfinite(scaled) else math.nan)
    else:
        lo, hi = _INT_RANGE[reg.type]
        n = round(scaled) if math.isfinite(scaled) else 0
        n = (n - lo) % (hi - lo + 1) + lo if wrap else min(max(n, lo), hi)
        raw = struct.pack(_PACK[reg.type], n)
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    if reg.word_order is WordOrder.LITTLE:
        words.reverse()
    return words


def decode(reg: RegisterSpec, words: list[int]) -> float:
    """The inverse of :func:`encode` (up to rounding and float32 precision): for tests, tools."""
    ordered = list(reversed(words)) if reg.word_order is WordOrder.LITTLE else list(words)
    raw = struct.pack(f">{len(ordered)}H", *ordered)
    fmt = ">f" if reg.type is RegisterType.FLOAT32 else _PACK[reg.type]
    value: float = struct.unpack(fmt, raw)[0]
    return value / reg.scale


def is_counter(scenario: Scenario, signal: str) -> bool:
    spec = scenario.signal(signal)
    return spec is not None and spec.type is SensorType.COUNTER


def describe(scenario: Scenario, device: ModbusDeviceSpec) -> list[str]:
    """Printable rows: ``address  count  type  word order  scale  signal (unit)``."""
    rows = [f"unit {device.unit}:", "  addr  regs  type     order   scale     signal"]
    for reg in sorted(device.registers, key=lambda r: r.address):
        spec = scenario.signal(reg.signal)
        unit = f" ({spec.unit})" if spec is not None and spec.unit else ""
        order = reg.word_order.value if reg.width == 2 else "-"
        rows.append(
            f"  {reg.address:>4}  {reg.width:>4}  {reg.type.value:<7}  {order:<6}  "
            f"{reg.scale:<8g}  {reg.signal}{unit}"
        )
    return rows
