"""CSV back-fill through rows that cannot be read: a byte that is not UTF-8, a line that is not
CSV, a read that fails part way. The row is skipped and counted, the replay keeps its place, and
no row is ever sent twice (a bad row used to restart the file from row 1, forever)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.config import CsvSourceConfig, SignalConfig
from edge_agent.sources.csv_replay import CsvSource
from shared.messages import Quality, Reading

NOW = 1_790_000_000_000
T0 = 1_767_000_000_000


def csv_source(path: Path, **kw: Any) -> CsvSource:
    cfg = CsvSourceConfig.from_mapping(
        {"type": "csv", "id": "file", "path": str(path), "time_format": "epoch_ms", **kw}
    )
    signal = SignalConfig.from_mapping(
        {"id": "lvl", "source": "file", "kind": "sensor", "column": "level"}
    )
    return CsvSource(cfg, [signal])


def rows_bytes(count: int, note: str = "ok") -> list[bytes]:
    return [b"ts,level,note\n"] + [f"{T0 + i * 1000},{i},{note}\n".encode() for i in range(count)]


async def read_all(src: CsvSource, limit: int = 100) -> list[Reading]:
    out: list[Reading] = []
    for _ in range(limit):
        if src.finished:
            return out
        out += await src.read(NOW)
    raise AssertionError(f"not finished after {limit} reads: {src.rows_read} rows read")


async def test_a_byte_that_is_not_utf8_skips_its_row_and_the_replay_goes_on(
    tmp_path: Path,
) -> None:
    lines = rows_bytes(3000)
    lines[1901] = lines[1901].replace(b",ok", b"\xe9,ok")  # data row 1901: level "1900\xe9"
    path = tmp_path / "export.csv"
    path.write_bytes(b"".join(lines))
    src = csv_source(path, rows_per_read=1000)
    readings = await read_all(src)
    assert [r.ts for r in readings] == [T0 + i * 1000 for i in range(3000) if i != 1900]
    assert all(r.quality == Quality.GOOD for r in readings)
    assert (src.rows_read, src.rows_skipped) == (3000, 1)
    assert src.last_error is not None
    assert src.last_error.startswith("row 1901: column 'level' is not UTF-8")
    assert await src.read(NOW) == []


async def test_a_bad_byte_in_a_column_not_read_costs_nothing(tmp_path: Path) -> None:
    lines = rows_bytes(5)
    lines[2] = lines[2].replace(b"ok", b"\xff\xfe")
    path = tmp_path / "export.csv"
    path.write_bytes(b"".join(lines))
    src = csv_source(path)
    readings = await read_all(src)
    assert [r.value for r in readings] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert src.rows_skipped == 0


async def test_a_line_that_is_not_csv_skips_its_row(tmp_path: Path) -> None:
    lines = rows_bytes(6)
    lines[3] = f"{T0 + 2000},2,{'x' * 200_000}\n".encode()  # beyond csv.field_size_limit
    path = tmp_path / "export.csv"
    path.write_bytes(b"".join(lines))
    src = csv_source(path, rows_per_read=2)
    readings = await read_all(src)
    assert [r.value for r in readings] == [0.0, 1.0, 3.0, 4.0, 5.0]
    assert src.rows_skipped == 1
    assert src.last_error is not None
    assert src.last_error.startswith("row 3: not CSV: field larger than field limit")


async def test_a_failed_read_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"".join(rows_bytes(10)))
    src = csv_source(path, rows_per_read=4)
    first = await src.read(NOW)
    assert [r.value for r in first] == [0.0, 1.0, 2.0, 3.0]
    real = src._next_row
    calls = 0

    def flaky() -> dict[str, str] | str | None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(5, "Input/output error")  # the SD card hiccups on row 6
        return real()

    monkeypatch.setattr(src, "_next_row", flaky)
    failed = await src.read(NOW)
    assert {(r.value, r.quality) for r in failed} == {(None, Quality.COMM_FAILURE)}
    rest = await read_all(src)
    # Row 5 was read in the failed call and is lost with it; nothing is sent twice.
    assert [r.value for r in rest] == [5.0, 6.0, 7.0, 8.0, 9.0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.integers(1, 40),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=3)), max_size=5),
    st.integers(1, 7),
)
async def test_any_damage_never_repeats_a_row_and_always_finishes(
    tmp_path: Path, count: int, damage: list[tuple[int, bytes]], per_read: int
) -> None:
    data = bytearray(b"".join(rows_bytes(count)))
    header = len(rows_bytes(0)[0])
    for at, junk in damage:  # bytes inserted anywhere past the header
        spot = header + at % (len(data) - header + 1)
        data[spot:spot] = junk
    path = tmp_path / "damaged.csv"
    path.write_bytes(bytes(data))
    src = csv_source(path, rows_per_read=per_read)
    lines = len(bytes(data).splitlines()) - 1  # past the header (\n, \r and \r\n end a line)
    readings = await read_all(src, limit=lines // per_read + 3)  # never starts over
    assert src.rows_read <= lines
    assert len(readings) <= src.rows_read - src.rows_skipped  # one signal: a reading a row
    if not damage:
        assert [r.value for r in readings] == [float(i) for i in range(count)]
