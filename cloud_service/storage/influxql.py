"""InfluxQL building blocks that cannot be injected into.

InfluxDB OSS has no bound parameters, so safety comes from two rules applied everywhere:
identifiers (database, retention policy, measurement, tag key, field) must pass the project's
id allow-list (:func:`shared.ids.check_id`) and are double-quoted; every string value goes
through :func:`quote_literal`, which escapes exactly what the InfluxQL scanner unescapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from shared.ids import check_id

from .line_protocol import TIME_BOUNDS

#: Aggregates accepted by :func:`select_aggregate` (an allow-list, like identifiers).
AGGREGATES: Final = frozenset(
    {"count", "first", "last", "max", "mean", "median", "min", "spread", "stddev", "sum"}
)
_DURATION_RE: Final = re.compile(r"^[1-9][0-9]{0,9}(ns|u|ms|s|m|h|d|w)\Z")


def quote_ident(name: str, kind: str = "identifier") -> str:
    """``"name"`` after checking ``name`` against the id allow-list."""
    return f'"{check_id(name, kind)}"'


def quote_literal(value: str) -> str:
    """``'value'`` with ``\\``, ``'`` and line breaks escaped (the scanner knows ``\\n``)."""
    if not isinstance(value, str):
        raise TypeError(f"literal must be str, not {type(value).__name__}")
    if "\r" in value:
        raise ValueError("InfluxQL string literals cannot hold a carriage return")
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def time_literal(ms: int) -> str:
    """Epoch milliseconds as an InfluxQL time literal (``1700000000000ms``)."""
    if type(ms) is not int:
        raise TypeError(f"time must be int milliseconds, not {type(ms).__name__}")
    lo, hi = TIME_BOUNDS["ms"]
    if not lo <= ms <= hi:
        raise ValueError(f"time {ms} ms is outside InfluxDB's range")
    return f"{ms}ms"


def duration_literal(duration: str) -> str:
    """Validate an InfluxQL duration (``30d``, ``1h``) or ``INF``."""
    if duration.upper() == "INF":
        return "INF"
    if not _DURATION_RE.match(duration):
        raise ValueError(f"invalid InfluxQL duration {duration!r} (e.g. '30d', '12h', 'INF')")
    return duration


def source(measurement: str, retention_policy: str | None = None) -> str:
    """``"rp"."measurement"`` or ``"measurement"`` (the database comes from ``?db=``)."""
    m = quote_ident(measurement, "measurement")
    if retention_policy is None:
        return m
    return f"{quote_ident(retention_policy, 'retention policy')}.{m}"


def where_clause(
    where_tags: Mapping[str, str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
) -> str:
    """`` WHERE "k" = 'v' AND time >= ..ms AND time < ..ms`` (half-open), or ``""``."""
    terms = [
        f"{quote_ident(k, 'tag key')} = {quote_literal(v)}"
        for k, v in sorted((where_tags or {}).items())
    ]
    if start_ms is not None:
        terms.append(f"time >= {time_literal(start_ms)}")
    if end_ms is not None:
        terms.append(f"time < {time_literal(end_ms)}")
    return f" WHERE {' AND '.join(terms)}" if terms else ""


def _group_by(group_by_tags: Iterable[str], interval: str | None = None) -> str:
    parts = [f"time({duration_literal(interval)})"] if interval is not None else []
    parts.extend(quote_ident(t, "tag key") for t in group_by_tags)
    return f" GROUP BY {', '.join(parts)}" if parts else ""


def select_series(
    measurement: str,
    field: str,
    where_tags: Mapping[str, str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    *,
    group_by_tags: Iterable[str] = (),
    retention_policy: str | None = None,
    limit: int | None = None,
) -> str:
    """Raw points of one field, oldest first, in ``[start_ms, end_ms)``."""
    # Identifiers passed check_id and literals quote_literal: no injection (S608).
    q = (
        f"SELECT {quote_ident(field, 'field')} FROM {source(measurement, retention_policy)}"  # noqa: S608
        f"{where_clause(where_tags, start_ms, end_ms)}{_group_by(group_by_tags)}"
    )
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise ValueError("limit must be a positive int")
        q += f" LIMIT {limit}"
    return q


def select_aggregate(
    measurement: str,
    field: str,
    function: str,
    interval: str,
    *,
    where_tags: Mapping[str, str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    group_by_tags: Iterable[str] = (),
    retention_policy: str | None = None,
    fill: str = "none",
) -> str:
    """``function(field)`` per ``interval`` bucket (e.g. ``mean`` per ``1m``)."""
    if function not in AGGREGATES:
        raise ValueError(f"aggregate {function!r} is not one of {sorted(AGGREGATES)}")
    if fill not in {"none", "null", "previous", "linear"}:
        raise ValueError(f"invalid fill {fill!r}")
    return (
        f"SELECT {function}({quote_ident(field, 'field')}) AS {quote_ident(function)} "  # noqa: S608
        f"FROM {source(measurement, retention_policy)}"
        f"{where_clause(where_tags, start_ms, end_ms)}"
        f"{_group_by(group_by_tags, interval)} fill({fill})"
    )


def create_database(database: str) -> str:
    return f"CREATE DATABASE {quote_ident(database, 'database')}"


def drop_database(database: str) -> str:
    return f"DROP DATABASE {quote_ident(database, 'database')}"


def create_retention_policy(
    name: str,
    database: str,
    duration: str = "INF",
    *,
    replication: int = 1,
    shard_duration: str | None = None,
    default: bool = False,
) -> str:
    if type(replication) is not int or replication < 1:
        raise ValueError("replication must be a positive int")
    q = (
        f"CREATE RETENTION POLICY {quote_ident(name, 'retention policy')} "
        f"ON {quote_ident(database, 'database')} DURATION {duration_literal(duration)} "
        f"REPLICATION {replication}"
    )
    if shard_duration is not None:
        q += f" SHARD DURATION {duration_literal(shard_duration)}"
    return q + (" DEFAULT" if default else "")
