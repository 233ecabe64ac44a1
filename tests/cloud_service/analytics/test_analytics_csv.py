"""CSV reader: any well-formed export parses exactly; anything else is a clear CsvError."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.analytics.csvio import (
    MAX_ABS_VALUE,
    TS_MAX_MS,
    TS_MIN_MS,
    CsvError,
    gaps,
    parse_timestamp,
    read_series,
)

stamps = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
finite = st.floats(-1e12, 1e12, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(stamps, finite), min_size=1, max_size=40),
    st.booleans(),
    st.sampled_from([",", ";", "\t"]),
)
def test_round_trip(rows: list[tuple[datetime, float]], iso_z: bool, sep: str) -> None:
    rows.sort(key=lambda r: r[0])
    lines = [f"timestamp{sep}value"]
    for t, v in rows:
        stamp = t.isoformat().replace("+00:00", "Z") if iso_z else str(int(t.timestamp() * 1000))
        lines.append(f"{stamp}{sep}{v!r}")
    s = read_series("\n".join(lines) + "\n", "value")
    assert s.ts_ms.tolist() == [int(t.timestamp() * 1000) for t, _ in rows]
    assert s.values.tolist() == [v for _, v in rows]
    assert len(s.rows) == len(rows)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        s = read_series(text, "value")
    except CsvError as exc:
        assert str(exc)
    else:
        assert s.ts_ms.size == s.values.size == len(s.rows) > 0
        assert (np.diff(s.ts_ms) >= 0).all()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("timestamp,value\n", "no rows"),
        ("time,value\n2026-01-01,1\n", "no 'timestamp' column"),
        ("timestamp,value\nyesterday,1\n", "line 2: not an ISO-8601"),
        ("timestamp,value\n2026-01-01,abc\n", "line 2: value 'abc' is not a number"),
        ("timestamp,value\n2026-01-01,inf\n", "not finite"),
        ("timestamp,value\n2026-01-01,1,2\n", "line 2: 3 fields"),
        (
            "timestamp,value\n2026-01-02,1\n2026-01-01,2\n",
            "line 3: timestamp 2026-01-01 is earlier",
        ),
        ("timestamp,value\n2026-01-01,\n", "no row has a value"),
    ],
)
def test_malformed_files(text: str, message: str) -> None:
    with pytest.raises(CsvError, match=message):
        read_series(text, "value")


def test_assumptions_are_stated() -> None:
    s = read_series(
        "\ufefftimestamp,value\n2026-01-01 00:00,1\n2026-01-01 00:00,2\n2026-01-01 00:05,\n",
        "value",
    )
    assert any("UTC" in n for n in s.notes)
    assert any("repeat" in n for n in s.notes)
    assert any("no value" in n for n in s.notes)
    assert math.isnan(s.values[2])


def test_timestamps() -> None:
    assert parse_timestamp("1700000000") == (1_700_000_000_000, False)
    assert parse_timestamp("1700000000000") == (1_700_000_000_000, False)
    assert parse_timestamp("2026-01-01T01:00:00+01:00") == (1_767_225_600_000, False)
    assert parse_timestamp("2026-01-01 00:00:00")[1] is True


def test_gaps() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    ts = np.array(
        [int((base + timedelta(minutes=m)).timestamp() * 1000) for m in (0, 1, 2, 3, 20, 21)]
    )
    period, after = gaps(ts, 5.0)
    assert period == 60_000
    assert after.tolist() == [4]


# --- review fixes: plausible timestamps and values, true line numbers, clearer errors ----------


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.integers(-(10**20), 10**20).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
        st.datetimes(timezones=st.sampled_from([UTC, None])).map(datetime.isoformat),
    )
)
def test_timestamps_are_in_range_or_refused(text: str) -> None:
    try:
        ms, _ = parse_timestamp(text)
    except ValueError as exc:  # never an OverflowError, never a date beyond 2262
        assert str(exc)
    else:
        assert TS_MIN_MS <= ms <= TS_MAX_MS


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1e18", "outside 1970-01-01..2262-04-11; it looks like epoch nanoseconds"),
        ("1700000000000000", "it looks like epoch microseconds"),
        ("1700000000000000000", "it looks like epoch nanoseconds"),
        ("-1000", "outside 1970-01-01..2262-04-11$"),
        ("9999-12-31T23:00:00Z", "outside 1970-01-01..2262-04-11$"),
        ("1969-12-31T23:59:59Z", "outside"),
        ("2262-04-12T00:00:00Z", "outside"),
    ],
)
def test_implausible_timestamps_are_refused_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_timestamp(text)


def test_timestamp_limits_themselves_are_accepted() -> None:
    assert parse_timestamp("1970-01-01T00:00:00Z") == (0, False)
    assert parse_timestamp("2262-04-11T00:00:00Z")[0] <= TS_MAX_MS


def test_huge_values_are_refused_naming_the_line() -> None:
    ok = read_series(f"timestamp,value\n2026-01-01,{MAX_ABS_VALUE!r}\n", "value")
    assert ok.values[0] == MAX_ABS_VALUE
    for v in ("1e300", "-1e+308", "1.5e15"):
        with pytest.raises(CsvError, match=r"line 3: value '.*' is too large"):
            read_series(f"timestamp,value\n2026-01-01,1\n2026-01-02,{v}\n", "value")


def test_line_numbers_count_blank_lines() -> None:
    text = "\n\ntimestamp,value\n2026-01-01,1\n\n\n2026-01-02,2\n\nbadts,1\n"
    with pytest.raises(CsvError, match="line 9: not an ISO-8601"):
        read_series(text, "value")
    with pytest.raises(CsvError, match="line 7: 3 fields"):
        read_series("\n\ntimestamp,value\n2026-01-01,1\n\n\n2026-01-02,2,3\n", "value")
    with pytest.raises(CsvError, match=r"line 6: timestamp 2026-01-01 is earlier than line 4's"):
        read_series("\n\ntimestamp,value\n2026-01-02,1\n\n2026-01-01,2\n", "value")
    s = read_series("\ntimestamp,value\n2026-01-01,1\n\n2026-01-02,2\n", "value")
    assert s.lines == [3, 5]


def test_separators_and_decimal_commas() -> None:
    s = read_series("timestamp;value\n2026-01-01;1.5\n2026-01-02;2\n", "value")
    assert s.values.tolist() == [1.5, 2.0]
    assert "fields are separated by ';'" in s.notes
    with pytest.raises(CsvError, match=r"line 2: value '1,5' is not a number \(a decimal comma"):
        read_series("timestamp;value\n2026-01-01;1,5\n", "value")
    with pytest.raises(CsvError, match=r"no 'value' column.*separated by commas"):
        read_series("timestamp,value;unit\n2026-01-01,1;kg\n", "value")


def test_repeated_columns_are_an_error() -> None:
    with pytest.raises(
        CsvError, match=r"line 1: the header has 2 'value' columns \(fields 2 and 3"
    ):
        read_series("timestamp,value,Value\n2026-01-01,1,2\n", "value")
    with pytest.raises(CsvError, match="2 'timestamp' columns"):
        read_series("timestamp,value,timestamp\n2026-01-01,1,x\n", "value")


def test_rows_too_far_apart_are_refused_when_asked() -> None:
    text = "timestamp,value\n2023-12-14T19:00Z,1\n2023-12-14T20:00Z,2\n2053-12-06T21:00Z,3\n"
    assert read_series(text, "value").ts_ms.size == 3
    with pytest.raises(CsvError, match=r"line 4: timestamp 2053-12-06T21:00Z is 10,950 days after"):
        read_series(text, "value", max_gap_ms=366 * 86_400_000)


def test_counts_in_notes_are_singular_or_plural() -> None:
    one = read_series("timestamp,value\n2026-01-01,1\n2026-01-01,\n2026-01-02,2\n", "value")
    assert "1 row has no value: passed over" in one.notes
    assert "1 row repeats the previous timestamp: each is used in file order" in one.notes
    two = read_series("timestamp,value\n2026-01-01,\n2026-01-01,\n2026-01-01,2\n", "value")
    assert "2 rows have no value: passed over" in two.notes
    assert "2 rows repeat the previous timestamp: each is used in file order" in two.notes
