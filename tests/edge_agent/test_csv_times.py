"""CSV times outside the range the wire contract accepts (1677-09-21..2262-04-11).

Regression: a back-fill row dated 9999-12-31 (a common "no date" in ERP exports) became
readings the spool stored unchecked and later could not decode, stalling every commit.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import CsvSourceConfig, SignalConfig
from edge_agent.processing import TS_MAX_MS, TS_MIN_MS
from edge_agent.sources.csv_replay import CsvSource, parse_time_ms
from shared.messages import Quality, Reading

NOW = 1_790_000_000_000
T = 1_767_600_000_000  # 2026-01-05T08:00:00Z
FORMATS = ("epoch_ms", "epoch_s", "iso8601")


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("9999-12-31T00:00:00Z", "iso8601"),
        ("9999-12-31", "iso8601"),
        ("0001-01-01", "iso8601"),
        ("2262-04-12", "iso8601"),
        ("1677-09-20", "iso8601"),
        (str(TS_MAX_MS + 1), "epoch_ms"),
        (str(TS_MIN_MS - 1), "epoch_ms"),
        ("1e30", "epoch_ms"),
        ("253402214400", "epoch_s"),
    ],
)
def test_a_time_outside_the_contracts_range_is_not_a_time(text: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="outside the range the wire contract accepts"):
        parse_time_ms(text, fmt)


def test_the_ends_of_the_range_are_times() -> None:
    assert parse_time_ms(str(TS_MAX_MS), "epoch_ms") == TS_MAX_MS
    assert parse_time_ms(str(TS_MIN_MS), "epoch_ms") == TS_MIN_MS
    assert parse_time_ms("2262-04-11", "iso8601") <= TS_MAX_MS
    assert parse_time_ms("1677-09-22", "iso8601") >= TS_MIN_MS


@given(st.integers(-(10**20), 10**20))
def test_epoch_ms_is_accepted_exactly_inside_the_range(ms: int) -> None:
    if TS_MIN_MS <= ms <= TS_MAX_MS:
        assert parse_time_ms(str(ms), "epoch_ms") == ms
    else:
        with pytest.raises(ValueError, match="outside the range"):
            parse_time_ms(str(ms), "epoch_ms")


@given(st.datetimes(timezones=st.just(UTC)))
def test_iso_times_are_accepted_exactly_inside_the_range(moment: datetime) -> None:
    ms = round(moment.timestamp() * 1000)
    if TS_MIN_MS <= ms <= TS_MAX_MS:
        assert parse_time_ms(moment.isoformat(), "iso8601") == ms
    else:
        with pytest.raises(ValueError, match="outside the range"):
            parse_time_ms(moment.isoformat(), "iso8601")


@given(st.text(max_size=40), st.sampled_from(FORMATS))
def test_any_cell_is_a_time_in_range_or_a_value_error(text: str, fmt: str) -> None:
    try:
        ms = parse_time_ms(text, fmt)
    except (ValueError, OverflowError):  # what CsvSource.read catches
        return
    assert TS_MIN_MS <= ms <= TS_MAX_MS


async def test_a_sentinel_row_is_skipped_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "export.csv"
    path.write_text(
        "ts,level\n2026-01-05T08:00:00Z,1\n9999-12-31T00:00:00Z,2\n2026-01-05T08:00:01Z,3\n",
        encoding="utf-8",
    )
    cfg = CsvSourceConfig.from_mapping({"type": "csv", "id": "file", "path": str(path)})
    signal = SignalConfig.from_mapping(
        {"id": "s.level", "source": "file", "kind": "stock_level", "column": "level"}
    )
    src = CsvSource(cfg, [signal])
    with caplog.at_level(logging.WARNING, logger="edge_agent.sources.csv_replay"):
        readings = await src.read(NOW)
    await src.close()
    assert readings == [
        Reading("s.level", T, 1.0, Quality.GOOD),
        Reading("s.level", T + 1000, 3.0, Quality.GOOD),
    ]
    assert src.rows_skipped == 1
    assert src.last_error is not None
    assert "row 2" in src.last_error
    assert "outside the range the wire contract accepts" in src.last_error
    assert "csv source file: skipped 1 row(s)" in caplog.text
    assert "9999-12-31" in caplog.text
