"""Plan times: epoch milliseconds inside, ISO-8601 (or epoch ms, or TOML dates) outside.

Planners write local times; a naive time is read in the plan's ``timezone`` (default UTC),
so a file can say ``start = "2025-06-02T06:00"`` for the plant's early shift. Conversion is
exact integer arithmetic: no float rounding, so a time read back is the time written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Final

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


class TimeFormatError(ValueError):
    """A value that is not a time a plan accepts."""


def to_ms(value: object, tz: tzinfo = UTC) -> int:
    """Epoch ms from an int (already ms), an ISO-8601 string, a datetime or a date."""
    if isinstance(value, bool):
        raise TimeFormatError("a time, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise TimeFormatError(f"not an ISO-8601 time: {value!r}") from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=tz)
        return (value - EPOCH) // _MS
    if isinstance(value, date):
        return to_ms(datetime(value.year, value.month, value.day), tz)
    raise TimeFormatError(f"an ISO-8601 string or integer epoch ms, not {type(value).__name__}")


def to_iso(ms: int) -> str:
    """``2025-06-02T06:00:00.000Z`` (UTC, millisecond precision: exact for any ms)."""
    text = (EPOCH + ms * _MS).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")
