"""The anomaly engine's share of the start-up rebuild: per signal, the raw history its model
needs (its warm-up at its period, then two days for the time-of-day profile; at least
``rebuild_hours``), within a fleet-wide budget shared out fairly (:func:`engine_windows`);
read newest first, capped per signal at its share, and folded into the engine in chunks.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from cloud_service.analytics.kernels import anomaly as ak
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.history_reads import (
    IDENTITY,
    QUERY_SIGNALS,
    Reads,
    Truncated,
    query,
    signal_filter,
)
from cloud_service.live.series import SeriesInfo
from cloud_service.live.trails import HOUR_MS
from cloud_service.storage import influxql
from cloud_service.storage.base import Series, TimeSeriesStore
from cloud_service.storage.errors import StorageError
from shared.messages import SignalKind

log = logging.getLogger(__name__)


#: After its warm-up, the anomaly model of a signal uses its time-of-day profile once it has
#: watched the signal for two days (``kernels.anomaly``): a rebuild that replays less leaves
#: a slow signal blind after a restart, and its profile learns what it should have flagged.
PROFILE_MS: Final = 2 * ak.DAY_MS


#: Rows folded into the engine per call (signals whole), and read per batch at most.
FOLD_POINTS: Final = 500_000


CONCURRENT_QUERIES: Final = 3  # batches read at a time, one query each


BATCH_ROWS: Final = FOLD_POINTS // CONCURRENT_QUERIES


FILL: Final = 0.8  # a time slice is sized to expect this much of each signal's LIMIT


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


Raw = npt.NDArray[np.float64]  # (n, 2): time ms, value


_EMPTY: Final[Raw] = np.zeros((0, 2))


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


async def replay(
    live: LiveAnalytics,
    store: TimeSeriesStore,
    windows: Sequence[EngineWindow],
    now: int,
    reads: Reads,
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


@dataclass(frozen=True, slots=True)
class _Answer:
    """One signal's rows in an answer, newest first."""

    given: int  # rows the server gave (numbers or not)
    oldest_ms: int  # the time of the oldest of them
    raw: Raw  # its numbers


async def _newest(  # noqa: PLR0917
    store: TimeSeriesStore,
    reads: Reads,
    kind: SignalKind,
    wanted: Sequence[_Wanted],
    start_ms: int,
    end_ms: int,
    limit: int,
) -> dict[tuple[str, str, str], _Answer]:
    """The newest ``limit`` raw rows of each of ``wanted`` in ``[start_ms, end_ms)``."""
    group = ", ".join(influxql.quote_ident(t, "tag key") for t in IDENTITY)
    q = (
        f"SELECT {influxql.quote_ident('value', 'field')} "  # noqa: S608 - identifiers quoted
        f"FROM {influxql.source(kind.value)} WHERE ({signal_filter(w.key for w in wanted)}) "
        f"AND time >= {influxql.time_literal(start_ms)} "
        f"AND time < {influxql.time_literal(end_ms)} "
        f"GROUP BY {group} ORDER BY time DESC LIMIT {limit}"
    )
    out: dict[tuple[str, str, str], _Answer] = {}
    for series in await query(store, reads, q, limit * len(wanted)):
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
    reads: Reads,
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
        except Truncated:
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
            except Truncated:
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
