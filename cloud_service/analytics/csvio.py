"""Strict reading of users' CSV exports: ``timestamp,<value column>`` with clear errors.

Everything wrong with a file becomes a :class:`CsvError` that names the line (as an editor
numbers it: blank lines count) and says what to fix; everything we had to assume (time zone,
separator, missing values, duplicates) is returned as a note. Rows stay as read so the anomaly
CLI can echo them with its columns appended.

Plausibility limits (a user's export, not the wire contract): timestamps from 1970-01-01 to
2262-04-11 (what InfluxDB stores), values up to ``MAX_ABS_VALUE`` in magnitude (beyond that the
forecasts' differences, sums and squares lose all precision or overflow), and, on request, no
more than ``max_gap_ms`` between consecutive rows (one mistyped year would otherwise stretch a
regular grid over decades).
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
TS_MIN_MS = 0  # 1970-01-01T00:00:00Z
TS_MAX_MS = 9_223_372_036_854  # 2262-04-11T23:47:16.854Z: int64 nanoseconds, InfluxDB's limit
TS_RANGE = "1970-01-01..2262-04-11"
MAX_ABS_VALUE = 1e15  # beyond this, float64 differences and squares are not to be trusted
DAY_MS = 86_400_000


class CsvError(ValueError):
    """The file cannot be analysed; the message says where and why."""


@dataclass(slots=True)
class Series:
    header: list[str]
    rows: list[list[str]]
    ts_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # nan where the value is missing
    notes: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line number of each row in the file


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 row"``, ``"2 rows"``; ``words`` for an irregular plural."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def _in_range(ms: float) -> bool:
    return TS_MIN_MS <= ms <= TS_MAX_MS


def _epoch_hint(num: float) -> str:
    """Which unit a bare number out of range would be plausible in, if any."""
    for unit, per_ms in (("microseconds", 1e3), ("nanoseconds", 1e6)):
        if _in_range(num / per_ms):
            return f"; it looks like epoch {unit}: give seconds or milliseconds"
    return ""


def parse_timestamp(text: str) -> tuple[int, bool]:
    """Epoch ms of an ISO-8601 timestamp or epoch seconds/ms; ``naive`` if no zone was given.

    Raises :class:`ValueError` for anything that is not a timestamp, or one outside
    1970-01-01..2262-04-11 (with a hint when a bare number is plausible as epoch µs or ns).
    """
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
        ms = num if abs(num) >= EPOCH_MS_MIN else num * 1000
        if not _in_range(ms):
            raise ValueError(f"timestamp {s} is outside {TS_RANGE}{_epoch_hint(num)}")
        return (int(num) if abs(num) >= EPOCH_MS_MIN else round(num * 1000)), False
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    naive = dt.tzinfo is None
    if naive:
        dt = dt.replace(tzinfo=UTC)
    try:
        ms = int(dt.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):  # year 1 or 9999 shifted by its offset
        ms = -1
    if not _in_range(ms):
        raise ValueError(f"timestamp {s} is outside {TS_RANGE}")
    return ms, naive


def _delimiter(text: str) -> str:
    """``,`` unless the header line has none and is separated by ``;`` or tabs instead."""
    first = next((ln for ln in io.StringIO(text) if ln.strip()), "")
    if "," not in first:
        for d in (";", "\t"):
            if d in first:
                return d
    return ","


def _find(header: list[str], name: str, line: int) -> int:
    names = [h.strip().lower() for h in header]
    at = [k for k, h in enumerate(names) if h == name]
    if not at:
        hint = ""
        if any(";" in h or "\t" in h for h in header):
            hint = "; fields must be separated by commas (or all by ';')"
        raise CsvError(f"line {line}: no '{name}' column (header is {','.join(header)!r}){hint}")
    if len(at) > 1:
        fields = " and ".join(str(k + 1) for k in at)
        raise CsvError(
            f"line {line}: the header has {len(at)} '{name}' columns (fields {fields}): "
            "rename or remove all but one"
        )
    return at[0]


def _value_error(line: int, column: str, cell: str) -> CsvError:
    hint = ""
    if "," in cell:
        hint = " (a decimal comma or a thousands separator? write 1234.5)"
    elif not any(c.isdigit() for c in cell):
        hint = " (leave the cell empty, or write NaN or NA, for a missing value)"
    return CsvError(f"line {line}: {column} {cell!r} is not a number{hint}")


def _parse_rows(
    rows: list[list[str]], lines: list[int], *, width: int, ti: int, vi: int, value_column: str
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], bool, int]:
    """Timestamps and values of the data rows; ``(ts, values, any naive, missing count)``."""
    ts = np.empty(len(rows), dtype=np.int64)
    vals = np.empty(len(rows), dtype=np.float64)
    naive_seen = False
    missing = 0
    for k, row in enumerate(rows):
        line = lines[k]
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
            raise _value_error(line, value_column, cell) from None
        if not math.isfinite(v):
            raise CsvError(f"line {line}: {value_column} {cell!r} is not finite")
        if abs(v) > MAX_ABS_VALUE:
            raise CsvError(
                f"line {line}: {value_column} {cell!r} is too large (more than "
                f"{MAX_ABS_VALUE:.0e} in magnitude): the arithmetic would overflow or lose "
                "all precision; rescale the column (e.g. to thousands)"
            )
        vals[k] = v
    return ts, vals, naive_seen, missing


def _table(text: str) -> tuple[list[list[str]], list[int], str]:
    """Non-blank rows, the line each ends on (blank lines counted), and the separator."""
    delim = _delimiter(text)
    reader = csv.reader(io.StringIO(text), delimiter=delim)
    table: list[list[str]] = []
    lines: list[int] = []
    try:
        for row in reader:
            if any(c.strip() for c in row):
                table.append(row)
                lines.append(reader.line_num)
    except csv.Error as exc:
        raise CsvError(f"line {reader.line_num}: not a readable CSV file: {exc}") from None
    return table, lines, delim


def read_series(text: str, value_column: str, *, max_gap_ms: int | None = None) -> Series:
    """Parse ``text`` (a whole CSV file) into sorted timestamps and values.

    Raises :class:`CsvError` for an empty file, a missing or repeated column, a bad timestamp
    or number, timestamps that go backwards (the fix is to sort the file; we do not reorder
    rows silently because the output echoes them in order) or, with ``max_gap_ms``, rows
    further apart than that (a mistyped timestamp, or a file to split).
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    table, lines, delim = _table(text)
    if not table:
        raise CsvError("the file is empty: expected a header 'timestamp," + value_column + "'")
    header = table[0]
    ti = _find(header, "timestamp", lines[0])
    vi = _find(header, value_column, lines[0])
    rows = table[1:]
    lines = lines[1:]
    if not rows:
        raise CsvError("the file has a header but no rows")
    ts, vals, naive_seen, missing = _parse_rows(
        rows, lines, width=len(header), ti=ti, vi=vi, value_column=value_column
    )
    d = np.diff(ts)
    back = np.nonzero(d < 0)[0]
    if back.size:
        k = int(back[0]) + 1
        raise CsvError(
            f"line {lines[k]}: timestamp {rows[k][ti].strip()} is earlier than line "
            f"{lines[k - 1]}'s ({rows[k - 1][ti].strip()}); sort the file by timestamp"
        )
    if max_gap_ms is not None:
        wide = np.nonzero(d > max_gap_ms)[0]
        if wide.size:
            k = int(wide[0]) + 1
            raise CsvError(
                f"line {lines[k]}: timestamp {rows[k][ti].strip()} is "
                f"{d[k - 1] / DAY_MS:,.0f} days after line {lines[k - 1]}'s "
                f"({rows[k - 1][ti].strip()}), more than the {max_gap_ms / DAY_MS:g} days "
                "allowed between rows: fix the wrong timestamp, or split the file at the gap"
            )
    notes: list[str] = []
    if delim != ",":
        notes.append(f"fields are separated by {'tabs' if delim == chr(9) else repr(delim)}")
    if naive_seen:
        notes.append("timestamps without a time zone were read as UTC")
    if missing:
        has = "has" if missing == 1 else "have"
        notes.append(f"{plural(missing, 'row')} {has} no {value_column}: passed over")
    dups = int(np.count_nonzero(d == 0))
    if dups:
        rep = "repeats" if dups == 1 else "repeat"
        notes.append(
            f"{plural(dups, 'row')} {rep} the previous timestamp: each is used in file order"
        )
    if missing == len(rows):
        raise CsvError(f"no row has a {value_column}")
    return Series(header=header, rows=rows, ts_ms=ts, values=vals, notes=notes, lines=lines)


def gaps(ts_ms: npt.NDArray[np.int64], factor: float) -> tuple[float, npt.NDArray[np.int64]]:
    """Median sampling period and the indices of rows that follow a gap of ``factor`` periods."""
    if ts_ms.size < 3:
        return 0.0, np.empty(0, dtype=np.int64)
    d = np.diff(ts_ms)
    period = float(np.median(d[d > 0])) if (d > 0).any() else 0.0
    if period <= 0:
        return 0.0, np.empty(0, dtype=np.int64)
    return period, np.nonzero(d > factor * period)[0].astype(np.int64) + 1
