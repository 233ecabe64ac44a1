"""CSV reader: any well-formed export parses exactly; anything else is a clear CsvError."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.analytics.csvio import CsvError, gaps, parse_timestamp, read_series

stamps = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
finite = st.floats(-1e12, 1e12, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(stamps, finite), min_size=1, max_size=40), st.booleans())
def test_round_trip(rows: list[tuple[datetime, float]], iso_z: bool) -> None:
    rows.sort(key=lambda r: r[0])
    lines = ["timestamp,value"]
    for t, v in rows:
        stamp = t.isoformat().replace("+00:00", "Z") if iso_z else str(int(t.timestamp() * 1000))
        lines.append(f"{stamp},{v!r}")
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
