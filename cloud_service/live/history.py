"""Start-up: the live analytics rebuilt from what InfluxDB already holds.

Without it a restart would forget every stock trail (forecasts need days of history) and
every anomaly baseline. Runs after the catalog is loaded and before ingest starts feeding,
so history is folded in first and live data after it, in event-time order (the broker keeps
incoming messages meanwhile). Trails are read downsampled (the last value per hour of stock,
per hour and per minute of counters: what the trails keep anyway), grouped by what names a
signal, so one whose other tags changed comes back whole. The anomaly engine gets, per
signal, the raw points its model needs to be as ready as before the restart (its warm-up at
its period, then two days for the time-of-day profile; at least ``rebuild_hours``), within a
fleet-wide budget of ``rebuild_max_points`` shared out fairly (:mod:`.replay`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from cloud_service.analytics.storage import DAY_MS, SIGNAL_BASELINE
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history_reads import (
    IDENTITY,
    QUERY_SIGNALS,
    Reads,
    Truncated,
    query,
    signal_filter,
)
from cloud_service.live.replay import PROFILE_MS, EngineWindow, engine_windows, fair_share, replay
from cloud_service.live.trails import HOUR_MS, MINUTE_MS, BucketTrail, CounterTrail
from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from cloud_service.storage.errors import StorageError
from shared.messages import SignalKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    trail_points: int
    engine_points: int
    seconds: float
    queries: int = 0
    failed_reads: int = 0  # queries that failed twice: their history left out
    signals_without_history: int = 0  # in the anomaly engine, for those failures


def _lookup(live: LiveAnalytics) -> dict[tuple[str, str, str], int]:
    return {
        (i.site, i.gateway, i.signal): sid
        for sid, i in enumerate(live.index.infos)
        if i.spec is not None
    }


def _id(ids: Mapping[tuple[str, str, str], int], tags: Mapping[str, str]) -> int | None:
    return ids.get((tags.get("site", ""), tags.get("gateway", ""), tags.get("signal", "")))


Into = Callable[[BucketTrail], Callable[[int, float], bool]]
Points = dict[int, list[tuple[int, float]]]


def _whole(trail: BucketTrail) -> Callable[[int, float], bool]:
    return trail.add


def _hours(trail: BucketTrail) -> Callable[[int, float], bool]:
    return trail.hourly.add if isinstance(trail, CounterTrail) else trail.add


def _minutes(trail: BucketTrail) -> Callable[[int, float], bool]:
    return trail.add_minute if isinstance(trail, CounterTrail) else trail.add


def _trail_reads(live: LiveAnalytics) -> tuple[tuple[SignalKind, str, int, Into], ...]:
    """(kind, bucket, span, into which buckets) of each downsampled read at start-up."""
    s = live.settings
    stock_ms = s.stock_history_days * 24 * HOUR_MS
    return (
        (SignalKind.STOCK_LEVEL, "1h", stock_ms, _whole),
        # a counter's hours net production out of stock consumption over the whole stock
        # history (as live, ``CounterTrail.hourly``); its minutes over ``counter_history_h``
        (SignalKind.PRODUCTION_COUNT, "1h", stock_ms, _hours),
        (SignalKind.PRODUCTION_COUNT, "1m", s.counter_history_h * HOUR_MS, _minutes),
    )


def _points(ids: Mapping[tuple[str, str, str], int], answer: Iterable[Series]) -> Points:
    """Each known signal's points, groups that name the same signal merged by time (a trail
    ignores what is older than its newest bucket)."""
    found: Points = {}
    for series in answer:
        sid = _id(ids, {k: str(v) for k, v in series.tags.items() if v})
        if sid is None:
            continue
        found.setdefault(sid, []).extend(
            (int(t), float(v))
            for t, v in series.values
            if isinstance(v, int | float) and not isinstance(v, bool)
        )
    for points in found.values():
        points.sort(key=lambda p: p[0])  # stable: a bucket two groups share keeps the later's
    return found


_BUCKET_MS: Final = {"1h": HOUR_MS, "1m": MINUTE_MS}


async def _last_per_bucket(  # noqa: PLR0917
    store: TimeSeriesStore,
    reads: Reads,
    ids: Mapping[tuple[str, str, str], int],
    kinds: Sequence[SignalKind | None],
    kind: SignalKind,
    interval: str | None,
    *,
    start_ms: int,
    end_ms: int,
) -> Points:
    """The last value per ``interval`` bucket of each known signal of ``kind``, oldest first,
    stamped with the bucket's start; with no ``interval``, the last reading with its time."""
    if interval is not None:
        q = influxql.select_aggregate(
            kind.value, "value", "last", interval,
            start_ms=start_ms, end_ms=end_ms, group_by_tags=IDENTITY,
        )  # fmt: skip
        rows_each = (end_ms - start_ms) // _BUCKET_MS[interval] + 2
    else:  # one row per signal, at its reading's own time
        group = ", ".join(influxql.quote_ident(t, "tag key") for t in IDENTITY)
        q = (
            f"SELECT last({influxql.quote_ident('value', 'field')}) "  # noqa: S608
            f"FROM {influxql.source(kind.value)}"
            f"{influxql.where_clause(None, start_ms, end_ms)} GROUP BY {group}"
        )
        rows_each = 1
    keys = [key for key, sid in ids.items() if kinds[sid] is kind]
    return _points(ids, await _per_signal(store, reads, q, keys, rows_each, kind.value))


async def _baselines(
    store: TimeSeriesStore,
    reads: Reads,
    ids: Mapping[tuple[str, str, str], int],
    start_ms: int,
    end_ms: int,
) -> list[tuple[int, int, int]]:
    """``(series id, longest flat run, watched since)`` as last written (``outputs``)."""
    group = ", ".join(influxql.quote_ident(t, "tag key") for t in IDENTITY)
    longest = influxql.quote_ident("flat_longest_ms", "field")
    since = influxql.quote_ident("watched_since_ms", "field")
    q = (
        f"SELECT last({longest}), last({since}) "  # noqa: S608 - identifiers quoted
        f"FROM {influxql.source(SIGNAL_BASELINE)}"
        f"{influxql.where_clause(None, start_ms, end_ms)} GROUP BY {group}"
    )
    out = []
    for series in await _per_signal(store, reads, q, list(ids), 1, SIGNAL_BASELINE):
        sid = _id(ids, {k: str(v) for k, v in series.tags.items() if v})
        if sid is None or not series.values:
            continue
        _t, flat, watched = series.values[-1][:3]
        if isinstance(flat, int | float) and isinstance(watched, int | float):
            out.append((sid, int(flat), int(watched)))
    return out


async def _per_signal(  # noqa: PLR0917
    store: TimeSeriesStore,
    reads: Reads,
    q: str,
    keys: Sequence[tuple[str, str, str]],
    rows_each: int,
    what: str,
) -> list[Series]:
    """The answer to ``q`` (every signal's, grouped by signal) in one query while the
    signals ``keys`` fit in ``reads.rows`` at ``rows_each`` rows each and the server does not
    truncate it; else ``q`` for the signals named, as many at a time as fit. A query that
    fails (retried once) is left out: logged and counted, its signals start without it."""
    if len(keys) * rows_each <= reads.rows:
        try:
            return await query(store, reads, q, None)
        except Truncated:
            pass  # signals the catalog no longer names, say
        except StorageError as exc:
            reads.failed(what, len(keys), exc)
            return []
    out: list[Series] = []
    pos = 0
    while pos < len(keys):
        chunk = keys[pos : pos + max(1, min(QUERY_SIGNALS, reads.rows // rows_each))]
        # the query's only WHERE is its time range: the signals named before it
        named = q.replace(" WHERE ", f" WHERE ({signal_filter(chunk)}) AND ", 1)
        try:
            out += await query(store, reads, named, rows_each * len(chunk))
        except Truncated:
            continue  # again, fewer at a time
        except StorageError as exc:
            reads.failed(what, len(chunk), exc)
        pos += len(chunk)
    return out


async def rebuild(
    live: LiveAnalytics, store: TimeSeriesStore, now_ms: int | None = None
) -> RebuildReport:
    """Trails, flat-run baselines and the anomaly engine from InfluxDB. A read that fails
    (retried once) leaves its signals without that history (logged, counted in the report);
    the rest of the rebuild goes on."""
    t0 = time.perf_counter()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    ids = _lookup(live)
    kinds = [i.kind for i in live.index.infos]
    reads = Reads()
    trail_reads = _trail_reads(live)
    trail_points = 0  # points a trail took in
    oldest_newest: dict[SignalKind, int] = {}  # the oldest of the signals' newest buckets
    for kind, interval, span_ms, into in trail_reads:
        found = await _last_per_bucket(
            store, reads, ids, kinds, kind, interval, start_ms=now - span_ms, end_ms=now + 1
        )
        for sid, points in found.items():
            trail = live.trail(sid)
            if trail is not None and points:
                add = into(trail)
                trail_points += sum(add(t, v) for t, v in points)
                oldest_newest[kind] = min(oldest_newest.get(kind, now), points[-1][0])
    # GROUP BY time() stamps buckets with their start, while a trail's newest bucket keeps its
    # reading's own time (``trails``): each signal's latest reading, read again with its time
    for kind, since in oldest_newest.items():
        latest = await _last_per_bucket(
            store, reads, ids, kinds, kind, None, start_ms=since, end_ms=now + 1
        )
        for sid, points in latest.items():
            trail = live.trail(sid)
            if trail is None or not points:
                continue
            t, v = points[-1]
            for k, _, span_ms, into in trail_reads:
                if k is kind and t >= now - span_ms:
                    into(trail)(t, v)  # the bucket's value again: not counted twice
    # what the stuck rule learned before, then what the replayed history adds to it
    live.restore_baselines(
        await _baselines(
            store, reads, ids, now - live.settings.stock_history_days * DAY_MS, now + 1
        )
    )
    windows = engine_windows(live)
    engine_points = await replay(live, store, windows, now, reads)
    report = RebuildReport(
        trail_points, engine_points, time.perf_counter() - t0,
        queries=reads.queries, failed_reads=reads.failed_reads,
        signals_without_history=reads.skipped_signals,
    )  # fmt: skip
    cut = sum(w.window_ms < w.wanted_ms for w in windows)
    log.info(
        "live analytics rebuilt from history: %d trail points, %d engine points in %.1fs, "
        "%d queries (%d signals, %d of them with less than their model needs: "
        "rebuild_max_points %d; %d reads failed, %d signals without engine history)",
        report.trail_points, report.engine_points, report.seconds, report.queries,
        len(windows), cut, live.settings.rebuild_max_points, report.failed_reads,
        report.signals_without_history,
    )  # fmt: skip
    return report


__all__ = ["PROFILE_MS", "EngineWindow", "RebuildReport", "engine_windows", "fair_share", "rebuild"]
