"""Start-up: the live analytics rebuilt from what InfluxDB already holds.

Without it a restart would forget every stock trail (forecasts need days of history) and
every anomaly baseline. Runs after the catalog is loaded and before ingest starts feeding,
so history is folded in first and live data after it, in event-time order (the broker keeps
incoming messages meanwhile). Trails are read downsampled (the last value per hour of stock,
per hour and per minute of counters: what the trails keep anyway), grouped by what names a
signal, so one whose other tags changed comes back whole. The anomaly engine gets, per
signal, the raw points its model needs to be as ready as before the restart (its warm-up at
its period, then two days for the time-of-day profile; at least ``rebuild_hours``), within a
fleet-wide budget of ``rebuild_max_points`` shared out fairly (``engine_windows``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.storage import DAY_MS, SIGNAL_BASELINE
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.trails import HOUR_MS, BucketTrail, CounterTrail
from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from cloud_service.storage.errors import QueryError
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


#: After its warm-up, the anomaly model of a signal uses its time-of-day profile once it has
#: watched the signal for two days (``kernels.anomaly``): a rebuild that replays less leaves
#: a slow signal blind after a restart, and its profile learns what it should have flagged.
PROFILE_MS: Final = 2 * ak.DAY_MS
#: Raw points read per query and folded into the engine per call (memory, answer size).
QUERY_POINTS: Final = 100_000
SERIES_POINTS: Final = 8_000  # of one signal per answer (influxd's max-row-limit: 10,000)
FOLD_POINTS: Final = 500_000
QUERY_SIGNALS: Final = 200  # signals named per query (its text grows with them)
MIN_SLICE_MS: Final = 60_000  # a truncated answer is read again in halves down to this
CONCURRENT_QUERIES: Final = 3


@dataclass(frozen=True, slots=True)
class EngineWindow:
    """What the start-up replays of one signal into the anomaly engine."""

    sid: int
    kind: SignalKind
    period_ms: float
    window_ms: int  # the history replayed: the last ``window_ms`` before the restart
    wanted_ms: int  # what its model needs (the window unless the budget cut it)

    @property
    def points(self) -> float:
        """Points expected in the window at the announced period."""
        return self.window_ms / self.period_ms


def wanted_ms(period_ms: float, warmup: float, floor_ms: float) -> int:
    """History a signal's anomaly model needs to be as ready as before a restart: its
    warm-up (``warmup`` samples at its period), then two days for the time-of-day profile;
    at least ``floor_ms``."""
    return int(max(floor_ms, warmup * period_ms + PROFILE_MS))


def fair_share(wanted: Sequence[float], budget: float) -> float:
    """The most points ``c`` each may have so that ``sum(min(w, c)) <= budget`` (max-min
    fair: what wants little gets it all, the rest share what is left); ``inf`` when all fit."""
    if math.fsum(wanted) <= budget:
        return math.inf
    rest, left = float(budget), len(wanted)
    for w in sorted(wanted):
        share = rest / left
        if w > share:
            return share
        rest -= w
        left -= 1
    return math.inf  # pragma: no cover - the sum exceeded the budget


def engine_windows(live: LiveAnalytics) -> list[EngineWindow]:
    """Per announced signal, the raw history replayed into the anomaly engine at start-up:
    what its model needs (:func:`wanted_ms`), and no more than ``rebuild_max_points`` expected
    points in all: over budget, slow signals still get all they need (few points) and fast
    ones share the rest equally (a 1 Hz signal gets its warm-up at least while the fleet's
    fast signals are fewer than the budget / 150)."""
    s = live.settings
    floor_ms = s.rebuild_hours * HOUR_MS
    params, cap = live.engine.params, live.engine.capacity
    out: list[tuple[int, SignalKind, float, int]] = []
    for sid, info in enumerate(live.index.infos):
        spec = info.spec
        if spec is None:
            continue
        period_ms = spec.period_s * 1000.0
        warmup = float(params[sid, ak.P_WARMUP]) if sid < cap else ak.DEFAULT_WARMUP
        out.append((sid, spec.kind, period_ms, wanted_ms(period_ms, warmup, floor_ms)))
    share = fair_share([w / p for _, _, p, w in out], s.rebuild_max_points)
    return [
        EngineWindow(sid, kind, p, min(w, int(share * p)) if math.isfinite(share) else w, w)
        for sid, kind, p, w in out
    ]


#: The tags that name a signal (see ``_id``). Trails are read grouped by these alone, so a
#: signal whose other tags changed over time (a ``location`` added or removed) comes back as
#: one series, its last value per bucket taken over all of its tag sets.
_IDENTITY = ("site", "gateway", "signal")

Into = Callable[[BucketTrail], Callable[[int, float], bool]]
Points = dict[int, list[tuple[int, float]]]
Raw = npt.NDArray[np.float64]  # (n, 2): time ms, value
RawSlices = dict[int, list[Raw]]  # per series id, its slices oldest first


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
    windows = engine_windows(live)
    engine_points = await _replay(live, store, ids, windows, now)
    report = RebuildReport(trail_points, engine_points, time.perf_counter() - t0)
    cut = sum(w.window_ms < w.wanted_ms for w in windows)
    log.info(
        "live analytics rebuilt from history: %d trail points, %d engine points in %.1fs "
        "(%d signals, %d of them with less than their model needs: rebuild_max_points %d)",
        report.trail_points, report.engine_points, report.seconds, len(windows), cut,
        live.settings.rebuild_max_points,
    )  # fmt: skip
    return report


async def _replay(
    live: LiveAnalytics,
    store: TimeSeriesStore,
    ids: Mapping[tuple[str, str, str], int],
    windows: Sequence[EngineWindow],
    now: int,
) -> int:
    """Each signal's window of raw points into the engine, oldest first. Signals of one kind
    and window are read together, a bounded batch at a time, each folded in one call (so a
    signal's flat runs are learned whole)."""
    groups: dict[tuple[SignalKind, int], list[EngineWindow]] = {}
    for w in windows:
        if w.window_ms > 0:
            groups.setdefault((w.kind, w.window_ms), []).append(w)
    infos = live.index.infos
    folded = 0
    for (kind, window_ms), members in sorted(groups.items(), key=lambda g: g[0][1]):
        for batch in _batches(members):
            keys = [(infos[b.sid].site, infos[b.sid].gateway, infos[b.sid].signal) for b in batch]
            periods = [b.period_ms for b in batch]
            found = await _raw_points(store, ids, kind, keys, now - window_ms, now + 1, periods)
            if found:
                folded += _fold(live, found)
    return folded


def _batches(members: Sequence[EngineWindow]) -> Iterator[list[EngineWindow]]:
    """Runs of ``members`` of at most ``FOLD_POINTS`` expected points and ``QUERY_SIGNALS``
    signals (one signal alone may expect more)."""
    batch: list[EngineWindow] = []
    points = 0.0
    for w in members:
        if batch and (points + w.points > FOLD_POINTS or len(batch) >= QUERY_SIGNALS):
            yield batch
            batch, points = [], 0.0
        batch.append(w)
        points += w.points
    if batch:
        yield batch


async def _raw_points(  # noqa: PLR0917
    store: TimeSeriesStore,
    ids: Mapping[tuple[str, str, str], int],
    kind: SignalKind,
    keys: Sequence[tuple[str, str, str]],
    start_ms: int,
    end_ms: int,
    periods_ms: Sequence[float],
) -> RawSlices:
    """The raw values of ``keys`` (announced every ``periods_ms``) in ``[start_ms, end_ms)``,
    in time slices of about ``QUERY_POINTS`` expected points and at most ``SERIES_POINTS``
    per signal; a slice the server truncates all the same (``max-row-limit``: too many
    points of one signal) is read again in halves."""
    named = " OR ".join(
        "("
        + " AND ".join(
            f"{influxql.quote_ident(t, 'tag key')} = {influxql.quote_literal(v)}"
            for t, v in zip(_IDENTITY, key, strict=True)
        )
        + ")"
        for key in keys
    )
    group = ", ".join(influxql.quote_ident(t, "tag key") for t in _IDENTITY)
    head = (
        f"SELECT {influxql.quote_ident('value', 'field')} "  # noqa: S608 - identifiers quoted
        f"FROM {influxql.source(kind.value)} WHERE ({named})"
    )
    rate = sum(1.0 / p for p in periods_ms)  # expected points per ms
    step = max(MIN_SLICE_MS, int(min(QUERY_POINTS / rate, SERIES_POINTS * min(periods_ms))))
    gate = asyncio.Semaphore(CONCURRENT_QUERIES)

    async def read(lo: int, hi: int) -> list[Series]:
        q = (
            f"{head} AND time >= {influxql.time_literal(lo)} "
            f"AND time < {influxql.time_literal(hi)} GROUP BY {group}"
        )
        try:
            async with gate:
                return await store.query(q, epoch="ms")
        except QueryError as exc:
            if "truncated" not in str(exc) or hi - lo <= MIN_SLICE_MS:
                raise
        mid = lo + (hi - lo) // 2
        return await read(lo, mid) + await read(mid, hi)  # the older half first

    # slices read a few at a time (the server works on one while this process decodes
    # another), folded oldest first
    answers = await asyncio.gather(
        *(read(lo, min(lo + step, end_ms)) for lo in range(start_ms, end_ms, step))
    )
    found: RawSlices = {}
    for answer in answers:
        for series in answer:
            sid = _id(ids, {k: str(v) for k, v in series.tags.items() if v})
            if sid is not None and series.values:
                found.setdefault(sid, []).append(_raw_array(series))
    return found


def _raw_array(series: Series) -> Raw:
    """``(time, value)`` rows as an ``(n, 2)`` float array (ms times are exact in a float
    up to the year 287,000); a value that is not a number (another writer's string or bool
    field) is not a reading."""
    rows = series.values
    ti, vi = series.columns.index("time"), series.columns.index("value")
    if (ti, vi) == (0, 1) and not any(r[1].__class__ is bool for r in rows):
        try:
            return np.array(rows, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            pass  # a string among them
    kept = [
        (r[ti], r[vi])
        for r in rows
        if isinstance(r[vi], int | float) and not isinstance(r[vi], bool)
    ]
    return np.array(kept, dtype=np.float64).reshape(-1, 2)


def _fold(live: LiveAnalytics, found: RawSlices) -> int:
    """Points of several signals (each's slices oldest first) into the engine in one call."""
    sids = sorted(found)
    parts = [np.concatenate(found[sid]) for sid in sids]
    for k, part in enumerate(parts):
        if part.shape[0] > 1 and (np.diff(part[:, 0]) < 0).any():
            parts[k] = part[np.argsort(part[:, 0], kind="stable")]
    if not parts:
        return 0
    n = [part.shape[0] for part in parts]
    whole = np.concatenate(parts)
    series = np.repeat(np.array(sids, dtype=np.int64), n)
    ts = whole[:, 0].astype(np.int64)
    return live.rebuild_engine(series, ts, np.ascontiguousarray(whole[:, 1]))


__all__ = ["EngineWindow", "RebuildReport", "engine_windows", "rebuild"]
