"""Pure Modbus core: register decoding/encoding and read planning (no I/O)."""

from __future__ import annotations

import itertools
import math
import struct
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from edge_agent.config import DataType, RegisterType, WordOrder
from edge_agent.errors import RegisterDecodeError
from edge_agent.sources.modbus import (
    ModbusPoint,
    ReadBlock,
    decode_value,
    encode_value,
    plan_reads,
    scale_value,
)
from firmware_sim.scenario.model import RegisterSpec
from firmware_sim.scenario.model import RegisterType as SimType
from firmware_sim.scenario.model import WordOrder as SimOrder
from firmware_sim.servers.modbus_map import encode as sim_encode
from shared.codec import make_reading
from shared.messages import Quality

float32s = st.floats(width=32, allow_nan=False)
values_of = {
    DataType.FLOAT32: float32s,
    DataType.UINT32: st.integers(0, 2**32 - 1),
    DataType.INT32: st.integers(-(2**31), 2**31 - 1),
    DataType.INT16: st.integers(-(2**15), 2**15 - 1),
    DataType.UINT16: st.integers(0, 2**16 - 1),
}
struct_format = {
    DataType.FLOAT32: ">f",
    DataType.UINT32: ">I",
    DataType.INT32: ">i",
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
}
word_orders = st.sampled_from(list(WordOrder))


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[DataType, float]:
    data_type = draw(st.sampled_from(list(DataType)))
    return data_type, draw(values_of[data_type])


@given(typed_values(), word_orders)
def test_round_trip(typed: tuple[DataType, float], order: WordOrder) -> None:
    data_type, value = typed
    registers = encode_value(value, data_type, order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    decoded = decode_value(registers, data_type, order)
    assert decoded == value
    if data_type is DataType.FLOAT32:
        assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # -0.0 survives


@given(typed_values(), word_orders)
def test_matches_struct_packing(typed: tuple[DataType, float], order: WordOrder) -> None:
    data_type, value = typed
    packed = struct.pack(struct_format[data_type], value)  # big-endian bytes: "ABCD"
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    if order is WordOrder.LITTLE:
        words.reverse()  # "CDAB"
    assert encode_value(value, data_type, order) == words
    assert (
        decode_value(words, data_type, order) == struct.unpack(struct_format[data_type], packed)[0]
    )


_PYMODBUS_TYPE = {
    DataType.FLOAT32: AsyncModbusTcpClient.DATATYPE.FLOAT32,
    DataType.UINT32: AsyncModbusTcpClient.DATATYPE.UINT32,
    DataType.INT32: AsyncModbusTcpClient.DATATYPE.INT32,
    DataType.INT16: AsyncModbusTcpClient.DATATYPE.INT16,
    DataType.UINT16: AsyncModbusTcpClient.DATATYPE.UINT16,
}


@given(typed_values(), word_orders)
def test_agrees_with_pymodbus_converters(typed: tuple[DataType, float], order: WordOrder) -> None:
    data_type, value = typed
    word_order: Literal["big", "little"] = "big" if order is WordOrder.BIG else "little"
    theirs = AsyncModbusTcpClient.convert_to_registers(value, _PYMODBUS_TYPE[data_type], word_order)
    assert encode_value(value, data_type, order) == theirs
    assert decode_value(theirs, data_type, order) == AsyncModbusTcpClient.convert_from_registers(
        theirs, _PYMODBUS_TYPE[data_type], word_order
    )


def test_known_vectors() -> None:
    assert encode_value(123.5, DataType.FLOAT32) == [0x42F7, 0x0000]
    assert encode_value(123.5, DataType.FLOAT32, WordOrder.LITTLE) == [0x0000, 0x42F7]
    assert decode_value([0x0001, 0xE240], DataType.UINT32) == 123_456
    assert decode_value([0xE240, 0x0001], DataType.UINT32, WordOrder.LITTLE) == 123_456
    assert decode_value([0xFFFF, 0xFFFE], DataType.INT32) == -2
    assert decode_value([0xFFFE, 0xFFFF], DataType.INT32, WordOrder.LITTLE) == -2
    assert decode_value([0xFFFE, 0x1DC0], DataType.INT32) == -123_456
    assert decode_value([0x8000, 0x0000], DataType.INT32) == -(2**31)
    assert decode_value([0x7FFF, 0xFFFF], DataType.INT32) == 2**31 - 1
    assert decode_value([0xFFFF, 0xFFFE], DataType.UINT32) == 2**32 - 2  # the same registers
    assert encode_value(-123_456, DataType.INT32, WordOrder.LITTLE) == [0x1DC0, 0xFFFE]
    assert decode_value([0xFFFF], DataType.INT16) == -1
    assert decode_value([0xFFFF], DataType.UINT16) == 65535
    # Word order means nothing for one register.
    assert decode_value([0x8000], DataType.INT16, WordOrder.LITTLE) == -32768


def test_nan_from_a_device_becomes_a_bad_reading() -> None:
    value = decode_value([0x7FC0, 0x0000], DataType.FLOAT32)
    assert math.isnan(value)
    reading = make_reading("s1", 0, scale_value(value, 1.0, 0.0), Quality.GOOD)
    assert (reading.value, reading.quality) == (None, Quality.BAD)


@pytest.mark.parametrize(
    ("registers", "data_type"),
    [
        ([1], DataType.FLOAT32),
        ([1, 2, 3], DataType.UINT32),
        ([1], DataType.INT32),
        ([], DataType.INT16),
        ([1, 2], DataType.UINT16),
    ],
)
def test_wrong_register_count(registers: list[int], data_type: DataType) -> None:
    with pytest.raises(RegisterDecodeError) as exc:
        decode_value(registers, data_type)
    assert exc.value.data_type == data_type
    assert exc.value.registers == tuple(registers)


def test_registers_must_be_16_bit() -> None:
    with pytest.raises(RegisterDecodeError, match="16-bit"):
        decode_value([0x1_0000], DataType.UINT16)
    with pytest.raises(RegisterDecodeError):
        decode_value([-1, 0], DataType.UINT32)


@pytest.mark.parametrize(
    ("value", "data_type"),
    [
        (-1, DataType.UINT16),
        (2**32, DataType.UINT32),
        (2**31, DataType.INT32),
        (-(2**31) - 1, DataType.INT32),
        (40_000, DataType.INT16),
        (1e39, DataType.FLOAT32),
    ],
)
def test_encode_out_of_range(value: float, data_type: DataType) -> None:
    with pytest.raises(ValueError, match="does not fit"):
        encode_value(value, data_type)


def test_scale_value() -> None:
    assert scale_value(12345, 0.01, 0.0) == pytest.approx(123.45)
    assert scale_value(10, 2.0, -5.0) == 15.0


# -- read planning -----------------------------------------------------------------------


def point(
    signal: str,
    address: int,
    data_type: DataType = DataType.FLOAT32,
    register: RegisterType = RegisterType.HOLDING,
) -> ModbusPoint:
    return ModbusPoint(signal, register, address, data_type)


def spans(blocks: list[ReadBlock]) -> list[tuple[str, int, int, list[str]]]:
    return [(b.register.value, b.start, b.count, [p.signal for p in b.points]) for b in blocks]


def test_adjacent_signals_share_one_request() -> None:
    blocks = plan_reads([point("b", 2, DataType.UINT32), point("a", 0)])
    assert spans(blocks) == [("holding", 0, 4, ["a", "b"])]


def test_a_gap_splits_unless_allowed() -> None:
    points = [point("a", 0), point("b", 3), point("c", 5, DataType.UINT16)]
    assert spans(plan_reads(points)) == [
        ("holding", 0, 2, ["a"]),
        ("holding", 3, 3, ["b", "c"]),
    ]
    assert spans(plan_reads(points, max_gap=1)) == [("holding", 0, 6, ["a", "b", "c"])]


def test_register_types_are_never_mixed() -> None:
    points = [point("i", 0, register=RegisterType.INPUT), point("h", 2), point("h0", 0)]
    assert spans(plan_reads(points)) == [
        ("holding", 0, 4, ["h0", "h"]),
        ("input", 0, 2, ["i"]),
    ]


def test_request_size_is_capped() -> None:
    points = [point(f"s{i}", 2 * i) for i in range(100)]  # 200 adjacent registers
    blocks = plan_reads(points)
    assert [(b.start, b.count) for b in blocks] == [(0, 124), (124, 76)]
    assert [(b.start, b.count) for b in plan_reads(points, max_registers=10)][:2] == [
        (0, 10),
        (10, 10),
    ]


def test_overlapping_signals_read_once() -> None:
    # The same registers read as two types (e.g. a float and its raw high word).
    blocks = plan_reads([point("f", 10), point("hi", 10, DataType.UINT16)])
    assert spans(blocks) == [("holding", 10, 2, ["hi", "f"])]
    block = blocks[0]
    assert block.registers_of(block.points[1], [0x42F7, 0]) == [0x42F7, 0]
    assert block.registers_of(block.points[0], [0x42F7, 0]) == [0x42F7]


def test_planning_rejects_bad_limits() -> None:
    with pytest.raises(ValueError, match="max_registers"):
        plan_reads([], max_registers=126)
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([], max_gap=-1)
    with pytest.raises(ValueError, match="exceed"):
        plan_reads([point("a", 0)], max_registers=1)
    assert plan_reads([]) == []


@st.composite
def point_sets(draw: st.DrawFn) -> list[ModbusPoint]:
    n = draw(st.integers(0, 40))
    return [
        point(
            f"s{i}",
            draw(st.integers(0, 300)),
            draw(st.sampled_from(list(DataType))),
            draw(st.sampled_from(list(RegisterType))),
        )
        for i in range(n)
    ]


@given(point_sets(), st.integers(2, 125), st.integers(0, 10))
def test_plan_covers_every_point_exactly_once(
    points: list[ModbusPoint], max_registers: int, max_gap: int
) -> None:
    blocks = plan_reads(points, max_registers=max_registers, max_gap=max_gap)
    planned = [p for b in blocks for p in b.points]
    assert sorted(p.signal for p in planned) == sorted(p.signal for p in points)
    for b in blocks:
        assert 1 <= b.count <= max_registers
        for p in b.points:
            assert p.register is b.register
            assert b.start <= p.address
            assert p.end <= b.start + b.count
    # Blocks of one register type come out in address order and never overlap, unless the
    # points themselves overlap (two views of one register) and cannot share a request.
    for register in RegisterType:
        ranges = [(b.start, b.start + b.count) for b in blocks if b.register is register]
        assert ranges == sorted(ranges)
        spans = sorted((p.address, p.end) for p in points if p.register is register)
        points_overlap = any(e > s for (_, e), (s, _) in itertools.pairwise(spans))
        if not points_overlap:
            assert all(end <= nxt for (_, end), (nxt, _) in itertools.pairwise(ranges))


@given(point_sets())
def test_adjacent_points_are_never_split_needlessly(points: list[ModbusPoint]) -> None:
    # With the default limits, two consecutive blocks of a type have a real gap, or the
    # first is full enough that joining would exceed the request size.
    blocks = plan_reads(points)
    for register in RegisterType:
        typed = [b for b in blocks if b.register is register]
        for first, second in itertools.pairwise(typed):
            end = first.start + first.count
            gap = second.start - end
            joined = max(end, second.start + second.count) - first.start
            assert gap > 0 or joined > 125


@given(st.integers(-(2**31), 2**31 - 1), word_orders)
def test_int32_reads_what_the_simulated_plc_writes(value: int, order: WordOrder) -> None:
    """firmware_sim's register map (what its Modbus server serves) against the agent's codec."""
    spec = RegisterSpec("s", 0, SimType.INT32, SimOrder(order.value), scale=1.0)
    registers = sim_encode(spec, value)
    assert decode_value(registers, DataType.INT32, order) == value
    assert encode_value(value, DataType.INT32, order) == registers
