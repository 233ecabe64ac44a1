"""Our own InfluxDB line-protocol encoder: strict, exact and cheap on the hot path.

Strict because InfluxDB fails a whole batch, or silently skips a line, on input it cannot
parse: a value that cannot be written faithfully raises :class:`LineProtocolError` here
instead. Exact because floats go out as ``repr()`` (shortest round-trip form). Cheap because
readings of one signal share a tag set: :func:`series_key` escapes it once and
:func:`encode_lines` only formats a value and a timestamp per reading.

Facts of the InfluxDB 1.x parser behind the rules (checked against influxd 1.6.7):

* A space, comma or ``=`` preceded by a backslash counts as escaped, whatever precedes the
  backslash, so a name or tag value *ending* in ``\\`` cannot be written: refused.
* In a measurement name or a field key, a backslash *before* a space, comma, ``=`` or ``"``
  is not kept: influxd stores ``a\\=b`` as ``a=b`` (another name, silently) or refuses the
  whole body (``invalid field format``); no escaping of ours writes it. Refused. Tag keys and
  tag values keep such a backslash, but influxd finds line ends with a simpler scan (any
  ``\\x`` is a pair; a bare space starts the fields, where ``"`` after ``=`` opens a quote):
  a series key that scan would open a quote in would swallow the next line. Refused, and a
  line whose string field would do it too (:func:`_check_line_scan`).
* A line whose measurement starts with ``#`` is a comment: accepted with 204 and dropped.
* Empty tag values are refused by the server; we omit the tag (InfluxDB's "no tag").
* ``time`` is refused as a tag or field key ("partial write ... dropped=1").
* Error answers echo names, tag values and unparsable lines in the ``X-Influxdb-Error``
  header; an ASCII control character there makes the response unreadable to HTTP clients
  (h11: "illegal header line"), so a bad point would look like an outage. Names and tag
  values therefore refuse ASCII controls except tab; string field values may hold them.
* Unknown ``precision`` values (``ns``, ``us``!) are silently read as nanoseconds: influxd
  knows ``n u ms s m h``, so :data:`PRECISIONS` maps our names to its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

FieldValue = float | int | bool | str

#: Our precision names -> InfluxDB 1.x ``precision``/``epoch`` parameter values.
PRECISIONS: Final[Mapping[str, str]] = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}
_NS_PER: Final[Mapping[str, int]] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

#: InfluxDB's time range in ns: 1677-09-21T00:12:43.145224194Z..2262-04-11T23:47:16.854775806Z.
MIN_TIME_NS: Final = -9_223_372_036_854_775_806
MAX_TIME_NS: Final = 9_223_372_036_854_775_806
#: Inclusive ``(min, max)`` timestamp per precision.
TIME_BOUNDS: Final[Mapping[str, tuple[int, int]]] = {
    p: (-(-MIN_TIME_NS // f), MAX_TIME_NS // f) for p, f in _NS_PER.items()
}
_ASCII_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_BACKSLASH_BEFORE_SPECIAL: Final = re.compile(r'\\[ ,="]')
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1


class LineProtocolError(ValueError):
    """A point that cannot be written faithfully as line protocol."""


@dataclass(frozen=True, slots=True)
class Point:
    """One point; ``time`` is an int in the precision passed to :func:`encode_point`."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time: int


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise LineProtocolError(f"{what} must be str, not {type(value).__name__}")
    if "\n" in value or "\r" in value:
        raise LineProtocolError(f"{what} {value!r} contains a line break")
    return value


def _check_name(value: object, what: str) -> str:
    text = _check_text(value, what)
    if not text:
        raise LineProtocolError(f"{what} must not be empty")
    if text.endswith("\\"):
        raise LineProtocolError(f"{what} {text!r} ends with a backslash (InfluxDB cannot read it)")
    if _ASCII_CONTROL.search(text):
        raise LineProtocolError(f"{what} {text!r} contains an ASCII control character")
    return text


def _check_no_backslash_escape(text: str, what: str) -> None:
    """Measurement names and field keys: influxd drops a backslash before `` ,="``."""
    if "\\" in text and _BACKSLASH_BEFORE_SPECIAL.search(text):
        raise LineProtocolError(
            f"{what} {text!r} has a backslash before a space, comma, '=' or '\"'"
            " (InfluxDB would store another name or refuse the line)"
        )


def _escape_tag_like(text: str) -> str:
    # Plain ``in`` + ``replace`` beats ``str.translate`` on the short strings seen here.
    if "," in text:
        text = text.replace(",", "\\,")
    if "=" in text:
        text = text.replace("=", "\\=")
    if " " in text:
        text = text.replace(" ", "\\ ")
    return text


def escape_measurement(name: str) -> str:
    text = _check_name(name, "measurement")
    _check_no_backslash_escape(text, "measurement")
    if text.startswith("#"):
        raise LineProtocolError(f"measurement {text!r} starts with '#' (a comment line)")
    if "," in text:
        text = text.replace(",", "\\,")
    if " " in text:
        text = text.replace(" ", "\\ ")
    return text


def escape_key(name: str, what: str = "key") -> str:
    """Escape a tag key or field key; ``time`` is reserved by InfluxDB. A ``what`` other than
    ``"tag key"`` is taken for a field key (stricter: see the module notes)."""
    text = _check_name(name, what)
    if text == "time":
        raise LineProtocolError(f"{what} 'time' is reserved by InfluxDB")
    if what != "tag key":
        _check_no_backslash_escape(text, what)
    return _escape_tag_like(text)


def escape_tag_value(value: str) -> str:
    return _escape_tag_like(_check_name(value, "tag value"))


def escape_string_field(value: str) -> str:
    """A quoted string field value (``"`` and ``\\`` escaped)."""
    text = _check_text(value, "string field value")
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    return f'"{text}"'


def format_field_value(value: FieldValue) -> str:
    """Typed field value: ``true``/``false``, ``<int>i``, ``repr(float)``, ``"string"``."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise LineProtocolError(f"float field value {value!r} is not finite")
        return float.__repr__(value)  # not repr(): numpy 2 prints np.float64(...)
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise LineProtocolError(f"integer field value {value} is outside int64")
        return f"{int.__repr__(value)}i"
    if isinstance(value, str):
        return escape_string_field(value)
    raise LineProtocolError(f"unsupported field value type {type(value).__name__}")


def format_fields(fields: Mapping[str, FieldValue]) -> str:
    if not fields:
        raise LineProtocolError("a point needs at least one field")
    return ",".join(
        f"{escape_key(k, 'field key')}={format_field_value(v)}" for k, v in fields.items()
    )


def check_time(ts: int, precision: str = "ms") -> int:
    """Return ``ts`` if it is an int inside InfluxDB's range for ``precision``."""
    try:
        lo, hi = TIME_BOUNDS[precision]
    except KeyError:
        raise LineProtocolError(
            f"unknown precision {precision!r}; use one of {sorted(PRECISIONS)}"
        ) from None
    if type(ts) is not int:
        raise LineProtocolError(f"timestamp must be int, not {type(ts).__name__}")
    if not lo <= ts <= hi:
        raise LineProtocolError(
            f"timestamp {ts} ({precision}) is outside InfluxDB's range 1677-09-21..2262-04-11"
        )
    return ts


def _scan(
    text: str, fields: bool, equals: int, commas: int, quoted: bool
) -> tuple[bool, int, int, bool, bool]:
    """influxd 1.6.7's ``scanLine`` over ``text`` (followed by more bytes): its state after,
    and whether it toggled a quote."""
    toggled = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == " ":
            fields = True
        if fields:
            if not quoted and c == "=":
                equals += 1
            elif not quoted and c == ",":
                commas += 1
            elif c == '"' and equals > commas:
                quoted = not quoted
                toggled = True
        i += 1
    return fields, equals, commas, quoted, toggled


def _check_line_scan(key: str, field_str: str) -> None:
    """Refuse a line influxd would not end at its newline (see the module notes)."""
    fields, equals, commas, quoted, toggled = _scan(key, False, 0, 0, False)
    if toggled:
        raise LineProtocolError(
            f"series {key!r}: its backslashes would make InfluxDB read a quote and join lines"
        )
    if fields and '"' in field_str and _scan(" " + field_str, fields, equals, commas, quoted)[3]:
        raise LineProtocolError(
            f"series {key!r} with fields {field_str!r}: InfluxDB would join the next line"
        )


def series_key(measurement: str, tags: Mapping[str, str]) -> str:
    """``measurement,k1=v1,k2=v2`` escaped, tags sorted by key, empty tag values omitted."""
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value == "":
            continue
        parts.append(f"{escape_key(key, 'tag key')}={escape_tag_value(value)}")
    joined = ",".join(parts)
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LineProtocolError(f"series {joined!r} is not valid Unicode: {exc}") from None
    if "\\\\" in joined:  # only a backslash of the input can mislead influxd's line scan
        _check_line_scan(joined, "")
    return joined


def line(series_key: str, field_str: str, ts: int, precision: str = "ms") -> str:
    """Assemble one line from a pre-escaped series key and field set."""
    if '"' in field_str and "\\\\" in series_key:
        _check_line_scan(series_key, field_str)
    return f"{series_key} {field_str} {check_time(ts, precision)}"


def encode_point(point: Point, precision: str = "ms") -> str:
    return line(
        series_key(point.measurement, point.tags),
        format_fields(point.fields),
        point.time,
        precision,
    )


def encode_points(points: Iterable[Point], precision: str = "ms") -> bytes:
    """Newline-joined UTF-8 body for ``/write``."""
    text = "\n".join(encode_point(p, precision) for p in points)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise LineProtocolError(f"points are not valid Unicode: {exc}") from None


def encode_lines(
    series_keys: Sequence[str],
    values: Sequence[float],
    times: Sequence[int],
    *,
    field: str = "value",
    precision: str = "ms",
) -> list[str]:
    """Hot path: one float field per reading, series keys from :func:`series_key`.

    Checks are done in bulk (one ``min``/``max``/``sum`` over the batch); the offending index
    is searched for only when a check fails.
    """
    n = len(series_keys)
    if len(values) != n or len(times) != n:
        raise LineProtocolError(
            f"length mismatch: {n} series keys, {len(values)} values, {len(times)} times"
        )
    if n == 0:
        return []
    prefix = f" {escape_key(field, 'field key')}="
    if precision not in TIME_BOUNDS:
        check_time(0, precision)  # raises the unknown-precision error
    lo, hi = TIME_BOUNDS[precision]
    if set(map(type, times)) != {int} or not (lo <= min(times) and max(times) <= hi):
        for ts in times:
            check_time(ts, precision)
    if set(map(type, values)) != {float}:
        for v in values:
            if not isinstance(v, float):
                raise LineProtocolError(f"value {v!r} is not a float")
        values = [float(v) for v in values]  # numpy 2 reprs float64 as np.float64(...)
    if not math.isfinite(sum(values)):  # NaN/Inf somewhere, or only an overflowing sum
        for v in values:
            if not math.isfinite(v):
                raise LineProtocolError(f"value {v!r} is not finite")
    return [f"{k}{prefix}{v!r} {t}" for k, v, t in zip(series_keys, values, times, strict=True)]
