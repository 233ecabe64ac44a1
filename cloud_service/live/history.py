"""Start-up: the live analytics rebuilt from what InfluxDB already holds.

Without it a restart would forget every stock trail (forecasts need days of history) and
every anomaly baseline. Runs after the catalog is loaded and before ingest starts feeding,
so history is folded in first and live data after it, in event-time order (the broker keeps
incoming messages meanwhile). Trails are read downsampled (the last value per hour of stock,
per hour and per minute of counters: what the trails keep anyway), grouped by what names a
signal, so one whose other tags changed comes back whole; the anomaly engine gets the raw
points of the last ``rebuild_hours``, fewer when the fleet would exceed ``rebuild_max_points``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from cloud_service.analytics.storage import DAY_MS, SIGNAL_BASELINE, read_history
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.trails import HOUR_MS, BucketTrail, CounterTrail
from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from shared.messages import SignalKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    trail_points: int
    engine_points: int
    seconds: float


def _lookup(live: LiveAnalytics) -> dict[tuple[str, str, str], int]:
    return {
        (i.site, i.gateway, i.signal): sid
        for sid, i in enumerate(live.index.infos)
        if i.spec is not None
    }


def _id(ids: Mapping[tuple[str, str, str], int], tags: Mapping[str, str]) -> int | None:
    return ids.get((tags.get("site", ""), tags.get("gateway", ""), tags.get("signal", "")))


def engine_window_h(live: LiveAnalytics) -> float:
    """Hours of raw history for the anomaly engine: ``rebuild_hours``, shortened so the
    announced signals' expected points stay within ``rebuild_max_points``."""
    s = live.settings
    per_hour = sum(3600.0 / i.spec.period_s for i in live.index.infos if i.spec is not None)
    if per_hour <= 0:
        return s.rebuild_hours
    return min(s.rebuild_hours, s.rebuild_max_points / per_hour)


#: The tags that name a signal (see ``_id``). Trails are read grouped by these alone, so a
#: signal whose other tags changed over time (a ``location`` added or removed) comes back as
#: one series, its last value per bucket taken over all of its tag sets.
_IDENTITY = ("site", "gateway", "signal")

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


async def _last_per_bucket(
    store: TimeSeriesStore,
    ids: Mapping[tuple[str, str, str], int],
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
            start_ms=start_ms, end_ms=end_ms, group_by_tags=_IDENTITY,
        )  # fmt: skip
    else:  # one row per signal, at its reading's own time
        group = ", ".join(influxql.quote_ident(t, "tag key") for t in _IDENTITY)
        q = (
            f"SELECT last({influxql.quote_ident('value', 'field')}) "  # noqa: S608
            f"FROM {influxql.source(kind.value)}"
            f"{influxql.where_clause(None, start_ms, end_ms)} GROUP BY {group}"
        )
    return _points(ids, await store.query(q, epoch="ms"))


async def _baselines(
    store: TimeSeriesStore, ids: Mapping[tuple[str, str, str], int], start_ms: int, end_ms: int
) -> list[tuple[int, int, int]]:
    """``(series id, longest flat run, watched since)`` as last written (``outputs``)."""
    group = ", ".join(influxql.quote_ident(t, "tag key") for t in _IDENTITY)
    longest = influxql.quote_ident("flat_longest_ms", "field")
    since = influxql.quote_ident("watched_since_ms", "field")
    q = (
        f"SELECT last({longest}), last({since}) "  # noqa: S608 - identifiers quoted
        f"FROM {influxql.source(SIGNAL_BASELINE)}"
        f"{influxql.where_clause(None, start_ms, end_ms)} GROUP BY {group}"
    )
    out = []
    for series in await store.query(q, epoch="ms"):
        sid = _id(ids, {k: str(v) for k, v in series.tags.items() if v})
        if sid is None or not series.values:
            continue
        _t, flat, watched = series.values[-1][:3]
        if isinstance(flat, int | float) and isinstance(watched, int | float):
            out.append((sid, int(flat), int(watched)))
    return out


async def rebuild(
    live: LiveAnalytics, store: TimeSeriesStore, now_ms: int | None = None
) -> RebuildReport:
    t0 = time.perf_counter()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    ids = _lookup(live)
    reads = _trail_reads(live)
    trail_points = 0  # points a trail took in
    oldest_newest: dict[SignalKind, int] = {}  # the oldest of the signals' newest buckets
    for kind, interval, span_ms, into in reads:
        found = await _last_per_bucket(
            store, ids, kind, interval, start_ms=now - span_ms, end_ms=now + 1
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
        latest = await _last_per_bucket(store, ids, kind, None, start_ms=since, end_ms=now + 1)
        for sid, points in latest.items():
            trail = live.trail(sid)
            if trail is None or not points:
                continue
            t, v = points[-1]
            for k, _, span_ms, into in reads:
                if k is kind and t >= now - span_ms:
                    into(trail)(t, v)  # the bucket's value again: not counted twice
    # what the stuck rule learned before, then what the replayed history adds to it
    live.restore_baselines(
        await _baselines(store, ids, now - live.settings.stock_history_days * DAY_MS, now + 1)
    )
    engine_points = 0
    hours = engine_window_h(live)
    if hours > 0:
        for kind in SignalKind:
            hist = await read_history(
                store, kind.value, days=hours / 24, now_ms=now, window_ms=HOUR_MS
            )
            series_ids, ts, values = hist.for_engine(lambda tags: _id(ids, tags))
            if series_ids.size:
                engine_points += live.rebuild_engine(series_ids, ts, values)
    report = RebuildReport(trail_points, engine_points, time.perf_counter() - t0)
    log.info(
        "live analytics rebuilt from history: %d trail points, %d engine points in %.1fs",
        report.trail_points, report.engine_points, report.seconds,
    )  # fmt: skip
    return report


__all__ = ["RebuildReport", "rebuild"]
