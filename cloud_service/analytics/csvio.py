"""Strict reading of users' CSV exports: ``timestamp,<value column>`` with clear errors.

Everything wrong with a file becomes a :class:`CsvError` that names the line and says what to
fix; everything we had to assume (time zone, missing values, duplicates) is returned as a note.
Rows stay as read so the anomaly CLI can echo them with its columns appended.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

MISSING = frozenset({"", "nan", "NaN", "NA", "null", "None"})
EPOCH_MS_MIN = 100_000_000_000  # a bare number this large is milliseconds, smaller is seconds


class CsvError(ValueError):
    """The file cannot be analysed; the message says where and why."""


@dataclass(slots=True)
class Series:
    header: list[str]
    rows: list[list[str]]
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # nan where the value is missing
    notes: list[str] = field(default_factory=list)


def parse_timestamp(text: str) -> tuple[int, bool]:
    """Epoch ms of an ISO-8601 timestamp or epoch seconds/ms; ``naive`` if no zone was given."""
    s = text.strip()
    if not s:
        raise ValueError("empty timestamp")
    try:
        num = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(num):
            raise ValueError(f"not a timestamp: {text!r}")
        return (int(num) if abs(num) >= EPOCH_MS_MIN else round(num * 1000)), False
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    naive = dt.tzinfo is None
    if naive:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000), naive


def _find(header: list[str], name: str) -> int:
    names = [h.strip().lower() for h in header]
    if name not in names:
        raise CsvError(f"line 1: no '{name}' column (header is {','.join(header)!r})")
    return names.index(name)


def _parse_rows(
    rows: list[list[str]], width: int, ti: int, vi: int, value_column: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], bool, int]:
    """Timestamps and values of the data rows; ``(ts, values, any naive, missing count)``."""
    ts = np.empty(len(rows), dtype=np.int64)
    vals = np.empty(len(rows), dtype=np.float64)
    naive_seen = False
    missing = 0
    for k, row in enumerate(rows):
        line = k + 2
        if len(row) != width:
            raise CsvError(f"line {line}: {len(row)} fields, the header has {width}")
        try:
            ts[k], naive = parse_timestamp(row[ti])
        except (ValueError, OverflowError) as exc:
            raise CsvError(f"line {line}: {exc}") from None
        naive_seen |= naive
        cell = row[vi].strip()
        if cell in MISSING:
            vals[k] = math.nan
            missing += 1
            continue
        try:
            v = float(cell)
        except ValueError:
            raise CsvError(f"line {line}: {value_column} {cell!r} is not a number") from None
        if not math.isfinite(v):
            raise CsvError(f"line {line}: {value_column} {cell!r} is not finite")
        vals[k] = v
    return ts, vals, naive_seen, missing


def read_series(text: str, value_column: str) -> Series:
    """Parse ``text`` (a whole CSV file) into sorted timestamps and values.

    Raises :class:`CsvError` for an empty file, a missing column, a bad timestamp or number,
    or timestamps that go backwards (the fix is to sort the file; we do not reorder rows
    silently because the output echoes them in order).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        table = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise CsvError(f"not a readable CSV file: {exc}") from None
    table = [r for r in table if any(c.strip() for c in r)]
    if not table:
        raise CsvError("the file is empty: expected a header 'timestamp," + value_column + "'")
    header = table[0]
    ti = _find(header, "timestamp")
    vi = _find(header, value_column)
    rows = table[1:]
    if not rows:
        raise CsvError("the file has a header but no rows")
    ts, vals, naive_seen, missing = _parse_rows(rows, len(header), ti, vi, value_column)
    back = np.nonzero(np.diff(ts) < 0)[0]
    if back.size:
        line = int(back[0]) + 3
        raise CsvError(
            f"line {line}: timestamp {rows[line - 2][ti].strip()} is earlier than the line "
            "before; sort the file by timestamp"
        )
    notes: list[str] = []
    if naive_seen:
        notes.append("timestamps without a time zone were read as UTC")
    if missing:
        notes.append(f"{missing} rows have no {value_column}: they are passed over")
    dups = int(np.count_nonzero(np.diff(ts) == 0))
    if dups:
        notes.append(f"{dups} rows repeat the previous timestamp: each is used in file order")
    if missing == len(rows):
        raise CsvError(f"no row has a {value_column}")
    return Series(header=header, rows=rows, ts_ms=ts, values=vals, notes=notes)


def gaps(ts_ms: npt.NDArray[np.int64], factor: float) -> tuple[float, npt.NDArray[np.int64]]:
    """Median sampling period and the indices of rows that follow a gap of ``factor`` periods."""
    if ts_ms.size < 3:
        return 0.0, np.empty(0, dtype=np.int64)
    d = np.diff(ts_ms)
    period = float(np.median(d[d > 0])) if (d > 0).any() else 0.0
    if period <= 0:
        return 0.0, np.empty(0, dtype=np.int64)
    return period, np.nonzero(d > factor * period)[0].astype(np.int64) + 1
