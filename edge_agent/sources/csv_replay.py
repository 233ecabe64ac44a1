"""CSV/file replay: back-fill from an export, or replay a recording in real time.

* ``backfill``: each read returns the next ``rows_per_read`` rows as readings stamped with the
  file's own times; the agent sends them in batches flagged historical (no live alerts). At
  the end of the file the source has nothing more to say (a finished back-fill is not an
  outage). The cloud refuses readings older than its window (35 days by default).
* ``realtime``: each read returns the next row stamped with the gateway clock (a recorded
  plant played back), starting over at the end when ``loop`` is set.

An empty or non-numeric cell gives a BAD reading for that signal; an unreadable time, or one
outside the range the wire contract accepts (1677-09-21..2262-04-11, e.g. a 9999-12-31
sentinel), a line that is not valid CSV, or a byte that is not UTF-8 in a column the source
reads, skips the row (counted in ``rows_skipped``, described in ``last_error`` with the row
number, and logged) and the replay goes on with the next row; a file that cannot be read gives
COMM_FAILURE, and the next read resumes after the rows already read (none is sent twice).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config import CsvSourceConfig, SignalConfig
from edge_agent.processing import TS_MAX_MS, TS_MIN_MS, ts_in_contract
from edge_agent.sources.base import check_signals, failed_readings
from edge_agent.sources.values import reading_from
from shared.messages import Quality, Reading

log = logging.getLogger(__name__)

#: What ``surrogateescape`` makes of a byte that is not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


def parse_time_ms(text: str, time_format: str) -> int:
    """Epoch milliseconds from a CSV cell; raises ValueError when it is not a time, or not one
    the wire contract accepts (OverflowError for an infinite number)."""
    text = text.strip()
    if time_format == "epoch_ms":
        ms = round(float(text))
    elif time_format == "epoch_s":
        ms = round(float(text) * 1000)
    else:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        ms = round(moment.timestamp() * 1000)
    if not ts_in_contract(ms):
        raise ValueError(
            f"{text!r} is {ms} ms, outside the range the wire contract accepts "
            f"[{TS_MIN_MS}, {TS_MAX_MS}] (1677-09-21..2262-04-11)"
        )
    return ms


class CsvSource:
    """Reads rows of one CSV file for a set of signals (one column each)."""

    def __init__(self, config: CsvSourceConfig, signals: Sequence[SignalConfig]) -> None:
        check_signals(config.id, signals)
        self.config = config
        self.signals = tuple(signals)
        self.signal_ids = tuple(s.id for s in signals)
        self.last_error: str | None = None
        self.rows_read = 0
        self.rows_skipped = 0
        self.finished = False
        self._file: io.TextIOWrapper | None = None
        self._position = 0  # data rows of the file already read in this pass
        self._columns: tuple[str, ...] = ()  # the columns read (checked for undecodable bytes)
        self._rows: Iterator[dict[str, str]] | None = None

    @property
    def id(self) -> str:
        return self.config.id

    async def read(self, now_ms: int) -> list[Reading]:
        if self.finished:
            return []
        try:
            rows = self._next_rows(
                1 if self.config.mode == "realtime" else self.config.rows_per_read
            )
        except (OSError, csv.Error, UnicodeDecodeError, LookupError) as exc:
            # The file as a whole (the header, the disk): the next read reopens it and resumes
            # after the rows already read, so nothing is sent twice.
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("csv source %s: %s", self.id, self.last_error)
            self._close_file()
            return failed_readings(self.signal_ids, now_ms, Quality.COMM_FAILURE)
        out: list[Reading] = []
        skipped = 0
        for number, row in rows:
            if isinstance(row, str):  # a row that is not UTF-8 or not CSV
                skipped += 1
                self.last_error = f"row {number}: {row}"
                continue
            if self.config.mode == "realtime":
                ts = now_ms
            else:
                try:
                    ts = parse_time_ms(
                        row.get(self.config.time_column) or "", self.config.time_format
                    )
                except (ValueError, OverflowError) as exc:
                    skipped += 1
                    self.last_error = f"row {number}: bad time: {exc}"
                    continue
            for s in self.signals:
                assert s.column is not None
                out.append(
                    reading_from(
                        s.id, ts, row.get(s.column), scale=s.scale, offset=s.offset, value_map={}
                    )
                )
        if skipped:
            self.rows_skipped += skipped
            log.warning(
                "csv source %s: skipped %d row(s) of %s (last: %s)",
                self.id,
                skipped,
                self.config.path,
                self.last_error,
            )
        return out

    async def close(self) -> None:
        self._close_file()

    def _next_rows(self, n: int) -> list[tuple[int, dict[str, str] | str]]:
        """Up to ``n`` rows, each with its number in the file (data rows, from 1); a row that
        cannot be parsed comes as the text of its problem."""
        rows: list[tuple[int, dict[str, str] | str]] = []
        while len(rows) < n:
            if self._rows is None:
                self._open()
            assert self._rows is not None
            row = self._next_row()
            if row is not None:
                self.rows_read += 1
                self._position += 1
                rows.append((self._position, row))
                continue
            self._close_file()
            self._position = 0
            if self.config.mode == "realtime" and self.config.loop and self.rows_read:
                continue
            self.finished = True
            log.info(
                "csv source %s: end of %s after %d row(s)",
                self.id,
                self.config.path,
                self.rows_read,
            )
            break
        return rows

    def _next_row(self) -> dict[str, str] | str | None:
        """The next row, the text of its problem, or None at the end of the file.

        The file is decoded with ``surrogateescape``: a byte that is not UTF-8 spoils its row
        only (a strict decoder would fail the read, and the position in the file with it), and
        only when it is in a column this source reads."""
        assert self._rows is not None
        try:
            row = next(self._rows, None)
        except csv.Error as exc:  # the reader drops the line and carries on after it
            return f"not CSV: {exc}"
        if row is None:
            return None
        for column in self._columns:
            cell = row.get(column)
            if isinstance(cell, str) and _UNDECODED.search(cell):
                raw = cell.encode("utf-8", "surrogateescape")[:40]
                return f"column {column!r} is not UTF-8: {raw!r}"
        return row

    def _open(self) -> None:
        path = Path(self.config.path)
        self._file = path.open(encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(self._file, delimiter=self.config.delimiter)
        header = set(reader.fieldnames or ())
        wanted = {s.column for s in self.signals if s.column is not None}
        if self.config.mode == "backfill":
            wanted.add(self.config.time_column)
        self._columns = tuple(sorted(wanted))
        missing = sorted(wanted - header)
        if missing:
            self._close_file()
            raise LookupError(f"{path}: no column(s) {', '.join(missing)}")
        self._rows = iter(reader)
        for _ in range(self._position):  # reopened after a failure: resume where it stopped
            if self._next_row() is None:
                break

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._rows = None
