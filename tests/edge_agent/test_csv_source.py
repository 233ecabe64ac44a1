"""CSV replay: back-fill with the file's timestamps in chunks, real-time replay, bad cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import CsvSourceConfig, SignalConfig
from edge_agent.sources.csv_replay import CsvSource, parse_time_ms
from shared.messages import Quality, Reading

NOW = 1_790_000_000_000
T = 1_767_600_000_000  # 2026-01-05T08:00:00Z


def csv_source(path: Path, **kw: Any) -> CsvSource:
    cfg = CsvSourceConfig.from_mapping({"type": "csv", "id": "file", "path": str(path), **kw})
    signals = [
        SignalConfig.from_mapping(
            {"id": f"s.{col}", "source": "file", "kind": "stock_level", "column": col, "scale": 2}
        )
        for col in ("level", "count")
    ]
    return CsvSource(cfg, signals)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(text, encoding="utf-8")
    return path


async def test_backfill_in_chunks_with_file_timestamps(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "ts,level,count\n"
        "2026-01-05T08:00:00Z,10,1\n"
        "2026-01-05T08:00:01,11,\n"  # naive time: UTC; an empty cell
        "2026-01-05T09:00:02+01:00,x,3\n"  # another offset; a non-number
        "not a time,13,4\n"
        "2026-01-05T08:00:03Z,14,5\n",
    )
    src = csv_source(path, rows_per_read=2)
    first = await src.read(NOW)
    assert first == [
        Reading("s.level", T, 20.0, Quality.GOOD),
        Reading("s.count", T, 2.0, Quality.GOOD),
        Reading("s.level", T + 1000, 22.0, Quality.GOOD),
        Reading("s.count", T + 1000, None, Quality.BAD),
    ]
    second = await src.read(NOW)
    assert second == [
        Reading("s.level", T + 2000, None, Quality.BAD),
        Reading("s.count", T + 2000, 6.0, Quality.GOOD),
    ]
    assert src.rows_skipped == 1
    assert src.last_error is not None
    assert "bad time" in src.last_error
    third = await src.read(NOW)
    assert [r.ts for r in third] == [T + 3000, T + 3000]
    assert await src.read(NOW) == []  # the back-fill is done: nothing more to say
    assert src.finished
    await src.close()


async def test_realtime_replay_stamps_now_and_loops(tmp_path: Path) -> None:
    path = write(tmp_path, "level,count\n1,2\n3,4\n")
    src = csv_source(path, mode="realtime", loop=True)
    values = [[r.value for r in await src.read(NOW + i)] for i in range(5)]
    assert values == [[2.0, 4.0], [6.0, 8.0], [2.0, 4.0], [6.0, 8.0], [2.0, 4.0]]
    assert {r.ts for r in await src.read(NOW + 9)} == {NOW + 9}
    await src.close()


async def test_missing_column_or_file_gives_comm_failure(tmp_path: Path) -> None:
    path = write(tmp_path, "ts,level\n2026-01-05T08:00:00Z,1\n")
    src = csv_source(path)
    readings = await src.read(NOW)
    assert {(r.signal, r.quality) for r in readings} == {
        ("s.level", Quality.COMM_FAILURE),
        ("s.count", Quality.COMM_FAILURE),
    }
    assert src.last_error is not None
    assert "count" in src.last_error
    path.unlink()
    assert {r.quality for r in await src.read(NOW)} == {Quality.COMM_FAILURE}


@pytest.mark.parametrize(
    ("text", "fmt", "ms"),
    [
        ("1767600000000", "epoch_ms", T),
        ("1767600000.5", "epoch_s", T + 500),
        ("2026-01-05T08:00:00.250Z", "iso8601", T + 250),
    ],
)
def test_time_formats(text: str, fmt: str, ms: int) -> None:
    assert parse_time_ms(text, fmt) == ms
