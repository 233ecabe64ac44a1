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
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.analytics.storage import DAY_MS, SIGNAL_BASELINE
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.series import SeriesInfo
from cloud_service.live.trails import HOUR_MS, MINUTE_MS, BucketTrail, CounterTrail
from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from cloud_service.storage.errors import QueryError, StorageError, StoreUnavailable
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


#: After its warm-up, the anomaly model of a signal uses its time-of-day profile once it has
#: watched the signal for two days (``kernels.anomaly``): a rebuild that replays less leaves
#: a slow signal blind after a restart, and its profile learns what it should have flagged.
PROFILE_MS: Final = 2 * ak.DAY_MS
#: Rows asked of influxd per answer, all series together: its ``[http] max-row-limit`` (0,
#: none, by default; 10,000 is common) counts the whole answer, not each series. An answer the
#: server truncates all the same is asked again for at most ``TRUNCATED_ROWS`` (under the
#: common limit), then half as many at each further truncation, for the rest of the rebuild.
QUERY_ROWS: Final = 100_000
TRUNCATED_ROWS: Final = 9_000
#: Rows folded into the engine per call (signals whole), and read per batch at most.
FOLD_POINTS: Final = 500_000
CONCURRENT_QUERIES: Final = 3  # batches read at a time, one query each
BATCH_ROWS: Final = FOLD_POINTS // CONCURRENT_QUERIES
QUERY_SIGNALS: Final = 200  # signals named per query (its text grows with them)
FILL: Final = 0.8  # a time slice is sized to expect this much of each signal's LIMIT
RETRY_DELAY_S: Final = 0.2  # before a failed query's one retry


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
_EMPTY: Final[Raw] = np.zeros((0, 2))


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
    reads: _Reads,
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
            start_ms=start_ms, end_ms=end_ms, group_by_tags=_IDENTITY,
        )  # fmt: skip
        rows_each = (end_ms - start_ms) // _BUCKET_MS[interval] + 2
    else:  # one row per signal, at its reading's own time
        group = ", ".join(influxql.quote_ident(t, "tag key") for t in _IDENTITY)
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
    reads: _Reads,
    ids: Mapping[tuple[str, str, str], int],
    start_ms: int,
    end_ms: int,
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
    reads: _Reads,
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
            return await _query(store, reads, q, None)
        except _Truncated:
            pass  # signals the catalog no longer names, say
        except StorageError as exc:
            reads.failed(what, len(keys), exc)
            return []
    out: list[Series] = []
    pos = 0
    while pos < len(keys):
        chunk = keys[pos : pos + max(1, min(QUERY_SIGNALS, reads.rows // rows_each))]
        # the query's only WHERE is its time range: the signals named before it
        named = q.replace(" WHERE ", f" WHERE ({_named(chunk)}) AND ", 1)
        try:
            out += await _query(store, reads, named, rows_each * len(chunk))
        except _Truncated:
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
    reads = _Reads()
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
    engine_points = await _replay(live, store, windows, now, reads)
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


@dataclass(slots=True)
class _Reads:
    """What the reads of one rebuild learned and counted, shared by its queries."""

    rows: int = QUERY_ROWS  # rows asked per answer (lowered by a truncated one)
    queries: int = 0
    failed_reads: int = 0  # queries that failed twice (or could not be asked), left out
    skipped_signals: int = 0  # signals left without engine history by them

    def failed(self, what: str, signals: int, exc: StorageError) -> None:
        self.failed_reads += 1
        log.warning(
            "rebuild: a read of %s for %d signals failed and is left out (%s); "
            "the rest of the rebuild goes on", what, signals, exc,
        )  # fmt: skip

    def truncated(self, asked: int) -> None:
        """An answer of ``asked`` rows was cut by the server (``max-row-limit``)."""
        self.rows = min(self.rows, TRUNCATED_ROWS if asked > TRUNCATED_ROWS else asked // 2)


class _Truncated(Exception):
    """The answer was cut by the server: ask again for fewer rows (``_Reads.rows``)."""


@dataclass(slots=True)
class _Wanted:
    """One signal's raw points as they are read, newest first."""

    sid: int
    key: tuple[str, str, str]
    cap: int  # rows at most (its share of the budget)
    cursor: int  # read down to here: every row at or after it is in ``parts``
    got: int = 0
    parts: list[Raw] = field(default_factory=list)  # newest first, each newest first

    def take(self, rows: Raw) -> None:
        keep = rows[: max(0, self.cap - self.got)]
        if keep.shape[0]:
            self.parts.append(keep)
            self.got += keep.shape[0]

    def oldest_first(self) -> Raw:
        return np.concatenate([p[::-1] for p in reversed(self.parts)])


def row_caps(windows: Sequence[EngineWindow], budget: int) -> list[int]:
    """Rows read at most of each signal: the points its window holds at its announced period
    (and one for a reading on the window's edge), and an equal share of what the budget has
    left beyond those, for signals stored denser than announced (at most ``FOLD_POINTS``
    of one signal). Their sum is the budget (give or take two rows a signal), whatever
    is stored."""
    base = [math.ceil(w.points) + 1 for w in windows]
    spare = max(0, budget - sum(base)) // max(1, len(windows))
    return [b + max(0, min(spare, FOLD_POINTS - b)) for b in base]


async def _replay(
    live: LiveAnalytics,
    store: TimeSeriesStore,
    windows: Sequence[EngineWindow],
    now: int,
    reads: _Reads,
) -> int:
    """Each signal's window of raw points into the engine, oldest first. Signals of one kind,
    window and period are read together in batches (``_read_batch``), a few batches at a
    time; what they read is folded as they complete, signals whole (so their flat runs are
    learned whole), about ``FOLD_POINTS`` rows a call. A batch whose reads fail twice is
    skipped (logged and counted); the others go on."""
    caps = row_caps(windows, live.settings.rebuild_max_points)
    groups: dict[tuple[SignalKind, int, float], list[tuple[EngineWindow, int]]] = {}
    for w, cap in zip(windows, caps, strict=True):
        if w.window_ms > 0:
            groups.setdefault((w.kind, w.window_ms, w.period_ms), []).append((w, cap))
    infos = live.index.infos
    gate = asyncio.Semaphore(CONCURRENT_QUERIES)

    async def read(
        kind: SignalKind, start: int, period_ms: float, batch: list[_Wanted]
    ) -> dict[int, Raw]:
        async with gate:  # one query at a time per batch: a few batches at a time
            try:
                await _read_batch(store, reads, kind, start, now + 1, period_ms, batch)
            except StorageError as exc:
                reads.failed(f"{kind.value} raw points", len(batch), exc)
                reads.skipped_signals += len(batch)
                return {}
        return {w.sid: w.oldest_first() for w in batch if w.got}

    tasks = [
        asyncio.create_task(read(kind, now - window_ms, period_ms, batch))
        for (kind, window_ms, period_ms), members in sorted(groups.items(), key=lambda g: g[0][1])
        for batch in _batches(infos, members, now + 1)
    ]
    folded, pending, rows = 0, {}, 0
    try:
        for done in asyncio.as_completed(tasks):
            for sid, points in (await done).items():
                pending[sid] = points
                rows += points.shape[0]
                if rows >= FOLD_POINTS:
                    folded += _fold(live, pending)
                    pending, rows = {}, 0
        if pending:
            folded += _fold(live, pending)
    finally:  # a fold that raised (a bug): no read left running behind it
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return folded


def _batches(
    infos: Sequence[SeriesInfo], members: Sequence[tuple[EngineWindow, int]], end_ms: int
) -> Iterator[list[_Wanted]]:
    """Runs of ``members`` of at most ``QUERY_SIGNALS`` signals and ``BATCH_ROWS`` rows by
    their caps (one signal alone may have more)."""
    batch: list[_Wanted] = []
    rows = 0
    for w, cap in members:
        if batch and (rows + cap > BATCH_ROWS or len(batch) >= QUERY_SIGNALS):
            yield batch
            batch, rows = [], 0
        info = infos[w.sid]
        batch.append(_Wanted(w.sid, (info.site, info.gateway, info.signal), cap, end_ms))
        rows += cap
    if batch:
        yield batch


def _named(keys: Iterable[tuple[str, str, str]]) -> str:
    """``(site = .. AND gateway = .. AND signal = ..) OR ...``: the signals ``keys``."""
    return " OR ".join(
        "("
        + " AND ".join(
            f"{influxql.quote_ident(t, 'tag key')} = {influxql.quote_literal(v)}"
            for t, v in zip(_IDENTITY, key, strict=True)
        )
        + ")"
        for key in keys
    )


async def _query(store: TimeSeriesStore, reads: _Reads, q: str, asked: int | None) -> list[Series]:
    """``q``, asked to answer at most ``asked`` rows (None: not known); a failure (a
    timeout, the store down) is retried once, a truncated answer raises :class:`_Truncated`
    (ask for fewer)."""
    for attempt in (1, 2):
        reads.queries += 1
        try:
            return await store.query(q, epoch="ms")
        except QueryError as exc:
            if "truncated" not in str(exc):
                raise
            if asked is not None:
                reads.truncated(asked)
                if reads.rows < 1:
                    raise
            raise _Truncated from exc
        except StoreUnavailable:
            if attempt == 2:
                raise
            await asyncio.sleep(RETRY_DELAY_S)
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class _Answer:
    """One signal's rows in an answer, newest first."""

    given: int  # rows the server gave (numbers or not)
    oldest_ms: int  # the time of the oldest of them
    raw: Raw  # its numbers


async def _newest(  # noqa: PLR0917
    store: TimeSeriesStore,
    reads: _Reads,
    kind: SignalKind,
    wanted: Sequence[_Wanted],
    start_ms: int,
    end_ms: int,
    limit: int,
) -> dict[tuple[str, str, str], _Answer]:
    """The newest ``limit`` raw rows of each of ``wanted`` in ``[start_ms, end_ms)``."""
    group = ", ".join(influxql.quote_ident(t, "tag key") for t in _IDENTITY)
    q = (
        f"SELECT {influxql.quote_ident('value', 'field')} "  # noqa: S608 - identifiers quoted
        f"FROM {influxql.source(kind.value)} WHERE ({_named(w.key for w in wanted)}) "
        f"AND time >= {influxql.time_literal(start_ms)} "
        f"AND time < {influxql.time_literal(end_ms)} "
        f"GROUP BY {group} ORDER BY time DESC LIMIT {limit}"
    )
    out: dict[tuple[str, str, str], _Answer] = {}
    for series in await _query(store, reads, q, limit * len(wanted)):
        if not series.values:
            continue
        tags = {k: str(v) for k, v in series.tags.items() if v}
        key = (tags.get("site", ""), tags.get("gateway", ""), tags.get("signal", ""))
        oldest = int(series.values[-1][series.columns.index("time")])
        out[key] = _Answer(len(series.values), oldest, _raw_array(series))
    return out


_NONE = _Answer(0, 0, _EMPTY)


async def _read_batch(  # noqa: PLR0917
    store: TimeSeriesStore,
    reads: _Reads,
    kind: SignalKind,
    start_ms: int,
    end_ms: int,
    period_ms: float,
    batch: Sequence[_Wanted],
) -> None:
    """The raw points of ``batch`` (announced every ``period_ms``) in ``[start_ms, end_ms)``,
    newest first, each signal's up to its cap.

    The signals are read together, a time slice at a time, newest first, each answer asking
    at most ``reads.rows`` rows in all (a ``LIMIT`` per signal: influxd's ``max-row-limit``
    counts the whole answer). A slice is sized by the rows the signals gave in the previous
    one (the first by their period) to fill about ``FILL`` of that limit, so an answer is
    never truncated and a signal sparser than announced takes few queries. A signal that
    filled its limit (denser than the others) is read on its own afterwards from where its
    rows stopped; when many did, the slice was too long and is read again shorter.
    """
    group = list(batch)
    hi = end_ms
    step = 0.0
    alone: list[_Wanted] = []
    while group:
        rows = reads.rows
        if len(group) > rows:  # a server answering fewer rows than signals named
            alone += group[rows:]
            group = group[:rows]
        each = rows // len(group)
        limit = min(each, max(w.cap - w.got for w in group))
        step = step or FILL * each * period_ms
        lo = max(start_ms, hi - max(1, int(step)))
        try:
            found = await _newest(store, reads, kind, group, lo, hi, limit)
        except _Truncated:
            continue
        # those the limit cut short of the slice and of their cap
        cut = {id(w) for w in group if _cut(w, found.get(w.key, _NONE), limit)}
        if 4 * len(cut) > len(group) and hi - lo > 1:  # many: the slice was too long
            step = FILL * min(hi - found[w.key].oldest_ms for w in group if id(w) in cut)
            continue
        rest, densest = [], 0.0
        for w in group:
            a = found.get(w.key, _NONE)
            w.take(a.raw)
            if id(w) in cut:  # read on its own from its oldest row given
                w.cursor = a.oldest_ms
                alone.append(w)
            elif w.got < w.cap and lo > start_ms:
                w.cursor = lo
                rest.append(w)
                densest = max(densest, a.given / (hi - lo))
        group, hi = rest, lo
        if group:
            fits = FILL * (reads.rows // len(group)) / densest if densest else math.inf
            step = min(4 * step, fits)
    for w in alone:
        while w.got < w.cap and w.cursor > start_ms:
            limit = min(reads.rows, w.cap - w.got)
            try:
                found = await _newest(store, reads, kind, [w], start_ms, w.cursor, limit)
            except _Truncated:
                continue
            a = found.get(w.key, _NONE)
            w.take(a.raw)
            w.cursor = a.oldest_ms if a.given >= limit else start_ms


def _cut(w: _Wanted, a: _Answer, limit: int) -> bool:
    """Whether ``a`` (asked for ``limit`` rows) left out rows of ``w`` it still wants."""
    return a.given >= limit and a.raw.shape[0] < w.cap - w.got


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


def _fold(live: LiveAnalytics, found: Mapping[int, Raw]) -> int:
    """Points of several signals (each's oldest first) into the engine in one call."""
    sids = sorted(found)
    parts = [found[sid] for sid in sids]
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
