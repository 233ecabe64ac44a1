"""Calendar arithmetic in UTC milliseconds, and weekly recurring windows (shifts, breaks).

Shifts and planned stops repeat on weekdays at fixed times of day; a window may cross
midnight (22:00-06:00). Adjacent or overlapping windows merge, so two back-to-back shifts are
one stretch of scheduled time with no boundary between them. All times are UTC: a scenario is
meant to be reproducible anywhere, not tied to a local time zone and its DST jumps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final

SECOND_MS: Final = 1_000
MINUTE_MS: Final = 60_000
HOUR_MS: Final = 3_600_000
DAY_MS: Final = 86_400_000
WEEK_MS: Final = 7 * DAY_MS
_EPOCH_WEEKDAY: Final = 3  # 1970-01-01 was a Thursday (Monday = 0)
WEEKDAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def day_start(t_ms: int) -> int:
    """Midnight UTC at or before ``t_ms``."""
    return t_ms - t_ms % DAY_MS


def weekday(t_ms: int) -> int:
    """Day of the week of ``t_ms``, Monday = 0."""
    return (t_ms // DAY_MS + _EPOCH_WEEKDAY) % 7


def week_start(t_ms: int) -> int:
    """Monday 00:00 UTC at or before ``t_ms``."""
    return day_start(t_ms) - weekday(t_ms) * DAY_MS


def iso_day(t_ms: int) -> str:
    """``YYYY-MM-DD`` of the UTC day holding ``t_ms``."""
    return datetime.fromtimestamp(t_ms / 1000, UTC).date().isoformat()


def day_of(text: str) -> int:
    """Midnight UTC of an ISO date ``YYYY-MM-DD`` (ValueError if it is not one)."""
    d = date.fromisoformat(text)
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp()) * 1000


def iso_time(t_ms: int) -> str:
    """RFC 3339 with milliseconds and ``Z``."""
    text = datetime.fromtimestamp(t_ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class DailyWindow:
    """``start_min``..``end_min`` minutes after midnight on ``weekdays`` (Monday = 0).

    ``end_min <= start_min`` means the window ends the next day; the weekday is the one it
    starts on.
    """

    start_min: int
    end_min: int
    weekdays: frozenset[int]

    def length_min(self) -> int:
        return (self.end_min - self.start_min) % 1440 or 1440


class WeeklyCalendar:
    """Merged recurring windows: is a time inside one, and when does that next change?"""

    def __init__(self, windows: Iterable[DailyWindow]) -> None:
        self.windows: tuple[DailyWindow, ...] = tuple(windows)

    def intervals(self, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """Merged ``[start, end)`` intervals intersecting ``[start_ms, end_ms)``."""
        raw: list[tuple[int, int]] = []
        first = day_start(start_ms) - DAY_MS  # a window of the day before may reach in
        day = first
        while day < end_ms:
            wd = weekday(day)
            for w in self.windows:
                if wd in w.weekdays:
                    s = day + w.start_min * MINUTE_MS
                    raw.append((s, s + w.length_min() * MINUTE_MS))
            day += DAY_MS
        return [(s, e) for s, e in _merge(raw) if e > start_ms and s < end_ms]

    def active(self, t_ms: int) -> bool:
        return any(s <= t_ms < e for s, e in self.intervals(t_ms, t_ms + 1))

    def next_change(self, t_ms: int) -> int | None:
        """The first boundary strictly after ``t_ms`` (within 8 days), or ``None``."""
        for s, e in self.intervals(t_ms, t_ms + 8 * DAY_MS):
            if s > t_ms:
                return s
            if e > t_ms:
                return e
        return None

    def minutes_on(self, day_ms: int) -> int:
        """Scheduled minutes inside the UTC day starting at ``day_ms``."""
        total = 0
        for s, e in self.intervals(day_ms, day_ms + DAY_MS):
            total += min(e, day_ms + DAY_MS) - max(s, day_ms)
        return total // MINUTE_MS


def _merge(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(intervals):
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged
