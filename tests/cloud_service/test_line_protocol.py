"""The line-protocol encoder: escaping, refusals and the hot-path helper (no server here)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.storage.line_protocol import (
    INT_MAX,
    INT_MIN,
    TIME_BOUNDS,
    LineProtocolError,
    Point,
    check_time,
    encode_lines,
    encode_point,
    encode_points,
    escape_key,
    escape_measurement,
    escape_string_field,
    escape_tag_value,
    format_field_value,
    line,
    series_key,
)

T = 1_700_000_000_000


def test_measurement_escapes_comma_and_space_only() -> None:
    assert escape_measurement("a,b c=d") == "a\\,b\\ c=d"


def test_keys_and_tag_values_escape_comma_equals_space() -> None:
    assert escape_key("a,b=c d") == "a\\,b\\=c\\ d"
    assert escape_tag_value('x,y=z w"\\q') == 'x\\,y\\=z\\ w"\\q'


def test_string_fields_escape_quote_and_backslash() -> None:
    assert escape_string_field('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert escape_string_field("") == '""'


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "\n"])
def test_line_breaks_are_refused_everywhere(bad: str) -> None:
    with pytest.raises(LineProtocolError, match="line break"):
        escape_measurement(bad)
    with pytest.raises(LineProtocolError, match="line break"):
        escape_key(bad)
    with pytest.raises(LineProtocolError, match="line break"):
        escape_tag_value(bad)
    with pytest.raises(LineProtocolError, match="line break"):
        escape_string_field(bad)


@pytest.mark.parametrize("name", ["a\\", "\\", "x y\\"])
def test_trailing_backslash_is_refused_in_names_and_tag_values(name: str) -> None:
    # influxd reads "a\ " as an escaped space: the line would not parse.
    for encode in (escape_measurement, escape_key, escape_tag_value):
        with pytest.raises(LineProtocolError, match="backslash"):
            encode(name)


@pytest.mark.parametrize("ch", ["\x00", "\x01", "\x0b", "\x0c", "\x1f", "\x7f"])
def test_ascii_controls_are_refused_in_names_and_tag_values(ch: str) -> None:
    # influxd echoes these in its X-Influxdb-Error header, which HTTP clients cannot read.
    for encode in (escape_measurement, escape_key, escape_tag_value):
        with pytest.raises(LineProtocolError, match="control"):
            encode(f"a{ch}b")
    assert escape_string_field(f"a{ch}b") == f'"a{ch}b"'


def test_tabs_and_other_unicode_controls_are_fine_in_names() -> None:
    assert escape_tag_value("a\tb\x85\u2028") == "a\tb\x85\u2028"


def test_measurement_starting_with_hash_would_be_a_comment() -> None:
    with pytest.raises(LineProtocolError, match="comment"):
        escape_measurement("#m")
    assert escape_measurement("m#") == "m#"


@pytest.mark.parametrize("bad", ["", None, 5])
def test_empty_or_non_str_names_are_refused(bad: Any) -> None:
    with pytest.raises(LineProtocolError):
        escape_measurement(bad)
    with pytest.raises(LineProtocolError):
        escape_key(bad)


def test_time_is_a_reserved_key() -> None:
    with pytest.raises(LineProtocolError, match="reserved"):
        series_key("m", {"time": "x"})
    with pytest.raises(LineProtocolError, match="reserved"):
        encode_point(Point("m", {}, {"time": 1.0}, T))


def test_series_key_sorts_tags_and_omits_empty_values() -> None:
    key = series_key("reading", {"signal": "t 1", "site": "s1", "empty": "", "a": "x=y"})
    assert key == "reading,a=x\\=y,signal=t\\ 1,site=s1"


def test_series_key_refuses_lone_surrogates() -> None:
    with pytest.raises(LineProtocolError, match="Unicode"):
        series_key("m", {"k": "\ud800"})


def test_encode_point_full_line() -> None:
    point = Point(
        "m",
        {"site": "s 1"},
        {"f": 1.5, "i": -3, "b": True, "c": False, "s": 'q"'},
        T,
    )
    assert encode_point(point) == f'm,site=s\\ 1 f=1.5,i=-3i,b=true,c=false,s="q\\"" {T}'


def test_encode_points_joins_lines_as_utf8() -> None:
    points = [Point("m", {"t": "😀"}, {"v": 1.0}, T), Point("m", {}, {"v": 2.0}, T + 1)]
    assert encode_points(points) == f"m,t=😀 v=1.0 {T}\nm v=2.0 {T + 1}".encode()
    assert encode_points([]) == b""


def test_encode_points_refuses_lone_surrogates_in_string_fields() -> None:
    with pytest.raises(LineProtocolError, match="Unicode"):
        encode_points([Point("m", {}, {"s": "\udc80"}, T)])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_refused(value: float) -> None:
    with pytest.raises(LineProtocolError, match="finite"):
        format_field_value(value)


def test_integers_are_suffixed_and_bounded() -> None:
    assert format_field_value(INT_MAX) == f"{INT_MAX}i"
    assert format_field_value(INT_MIN) == f"{INT_MIN}i"
    for bad in (INT_MAX + 1, INT_MIN - 1):
        with pytest.raises(LineProtocolError, match="int64"):
            format_field_value(bad)


def test_unsupported_field_types_are_refused() -> None:
    for bad in (None, b"x", [1], 1j):
        with pytest.raises(LineProtocolError, match="unsupported"):
            format_field_value(bad)  # type: ignore[arg-type]
    with pytest.raises(LineProtocolError, match="at least one field"):
        encode_point(Point("m", {}, {}, T))


def test_numpy_floats_are_written_as_plain_numbers() -> None:
    assert format_field_value(np.float64(0.1)) == "0.1"
    assert encode_lines(["m"], [np.float64(2.5)], [T]) == [f"m value=2.5 {T}"]


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip_exactly(value: float) -> None:
    text = format_field_value(value)
    assert float(text).hex() == value.hex()  # bit-identical, -0.0 included


@pytest.mark.parametrize("precision", ["ns", "us", "ms", "s"])
def test_time_range_is_inclusive_and_checked_per_precision(precision: str) -> None:
    lo, hi = TIME_BOUNDS[precision]
    assert check_time(lo, precision) == lo
    assert check_time(hi, precision) == hi
    for bad in (lo - 1, hi + 1):
        with pytest.raises(LineProtocolError, match="range"):
            check_time(bad, precision)


def test_time_bounds_match_influxd() -> None:
    # Measured on influxd 1.6.7: +-9223372036854775806 ns and +-9223372036854 ms accepted.
    assert TIME_BOUNDS["ns"] == (-9223372036854775806, 9223372036854775806)
    assert TIME_BOUNDS["ms"] == (-9223372036854, 9223372036854)
    assert TIME_BOUNDS["s"] == (-9223372036, 9223372036)


@pytest.mark.parametrize("bad", [1.5, True, "1", None])
def test_timestamps_must_be_ints(bad: Any) -> None:
    with pytest.raises(LineProtocolError, match="int"):
        check_time(bad)


def test_unknown_precision_is_refused() -> None:
    # influxd would silently read it as nanoseconds.
    with pytest.raises(LineProtocolError, match="precision"):
        check_time(1, "u")
    with pytest.raises(LineProtocolError, match="precision"):
        encode_lines(["m"], [1.0], [1], precision="n")


def test_line_assembles_and_checks_time() -> None:
    assert line("m,a=b", "v=1.0", T) == f"m,a=b v=1.0 {T}"
    with pytest.raises(LineProtocolError):
        line("m", "v=1.0", TIME_BOUNDS["ms"][1] + 1)


ASCII_CONTROLS = "".join(map(chr, [*range(0x09), *range(0x0A, 0x20), 0x7F]))
tag_values = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters=ASCII_CONTROLS)
).filter(lambda s: not s.endswith("\\"))


@given(
    rows=st.lists(
        st.tuples(
            tag_values,
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(*TIME_BOUNDS["ms"]),
        ),
        max_size=20,
    )
)
def test_encode_lines_equals_encode_point(rows: list[tuple[str, float, int]]) -> None:
    keys = [series_key("reading", {"signal": tag}) for tag, _, _ in rows]
    got = encode_lines(keys, [v for _, v, _ in rows], [t for _, _, t in rows])
    expected = [
        encode_point(Point("reading", {"signal": tag}, {"value": v}, t)) for tag, v, t in rows
    ]
    assert got == expected


def test_encode_lines_custom_field_and_precision() -> None:
    assert encode_lines(["m"], [1.0], [5], field="a b", precision="s") == ["m a\\ b=1.0 5"]


@pytest.mark.parametrize(
    ("values", "times", "match"),
    [
        ([1.0, math.nan], [T, T], "finite"),
        ([1.0, -math.inf], [T, T], "finite"),
        ([1.0, 2], [T, T], "not a float"),
        ([1.0, True], [T, T], "not a float"),
        ([1.0, 2.0], [T, True], "int"),
        ([1.0, 2.0], [T, float(T)], "int"),
        ([1.0, 2.0], [T, TIME_BOUNDS["ms"][1] + 1], "range"),
        ([1.0], [T, T], "length mismatch"),
    ],
)
def test_encode_lines_refuses_bad_input(values: list[Any], times: list[Any], match: str) -> None:
    with pytest.raises(LineProtocolError, match=match):
        encode_lines(["m", "m"], values, times)


def test_encode_lines_tolerates_an_overflowing_sum() -> None:
    # sum() overflows to inf although every value is finite: must not be refused.
    assert encode_lines(["m", "m"], [1e308, 1e308], [T, T]) == [
        f"m value=1e+308 {T}",
        f"m value=1e+308 {T}",
    ]
    assert encode_lines([], [], []) == []
