"""Analytics outputs in InfluxDB (their own measurements), and stored history back as arrays.

Only the narrow :class:`~cloud_service.storage.base.TimeSeriesStore` interface is used
(``write`` and ``query``); lines are built with the storage layer's line-protocol encoder and
queries with its InfluxQL quoting, so no tag value can break a line or a query. Writes go
through :func:`~cloud_service.storage.base.write_isolating`: one point the server refuses is
reported alone and never costs the rest of the batch.

Measurements (tags as the readings have them: ``site``, ``gateway``, ``signal``, ``sku``,
``location``, ``line``; an empty or missing tag is left out, as ingest does):

* ``anomaly``: ``score`` (float, 0..1; 0.5 is the flag threshold), ``flag`` (int 0/1, the
  onset of an episode), ``reason`` (int, :class:`~.codes.Reason`), at the reading's time;
* ``depletion``: ``stock``, ``rate_per_hour``, ``trend_per_hour``, ``stockout_p10_h``,
  ``stockout_p50_h``, ``stockout_p90_h``, ``safety_stock_p10_h`` .. ``_p90_h``,
  ``reorder_in_h`` (hours from the point's time; ``<= 0``: order now), ``reorder_qty``,
  ``demand_class`` and ``model`` (int codes, :class:`~.codes.DemandClass`,
  :class:`~.codes.Model`), at the forecast's ``as_of`` time;
* ``plan_adherence``: ``produced``, ``planned_so_far``, ``attainment``,
  ``run_rate_per_hour``, ``projected_qty``, ``projected_attainment``,
  ``required_rate_per_hour``; demand against its plan: ``demand_actual``, ``demand_planned``,
  ``demand_excess``, ``demand_ratio``, ``buffer_used``; and ``mix_drift``; at the time the
  figures were computed.

A figure that is unknown (beyond the forecast horizon, not defined yet: ``None``, NaN or
infinite) is left out of the point; InfluxDB refuses NaN and infinities, and an absent field
reads as "unknown". A point with no known field at all is not written.

The same series and timestamp overwrite each other in InfluxDB, so writing a replayed batch's
outputs again is idempotent.

Reading back: :func:`read_history` reads the last N days of one field of a measurement (the
raw readings, e.g. ``stock_level``/``value``) as flat arrays, ascending in time per series, in
bounded time windows (a window the server truncates is split in halves), and
:func:`rebuild_engine` replays them into an :class:`~.engine.AnomalyEngine` at start-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import numpy.typing as npt

from cloud_service.storage import influxql
from cloud_service.storage.base import TimeSeriesStore, WriteOutcome, write_isolating
from cloud_service.storage.errors import QueryError
from cloud_service.storage.line_protocol import (
    FieldValue,
    format_fields,
    line,
    series_key,
)

if TYPE_CHECKING:
    from cloud_service.analytics.depletion import DepletionResult
    from cloud_service.analytics.engine import AnomalyEngine, UpdateResult
    from cloud_service.analytics.plan import Adherence, DemandVsPlan

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

ANOMALY: Final = "anomaly"
DEPLETION: Final = "depletion"
PLAN_ADHERENCE: Final = "plan_adherence"
#: Per signal, what the stuck rule has learned (its longest flat run, since when it watches):
#: read back at start-up, so a restart does not start the stuck warm-up over.
SIGNAL_BASELINE: Final = "signal_baseline"
#: Tag keys of every analytics output, the same as the readings'.
TAG_KEYS: Final = ("site", "gateway", "signal", "sku", "location", "line")
PRECISION: Final = "ms"
DAY_MS: Final = 86_400_000
HOUR_MS: Final = 3_600_000
MIN_WINDOW_MS: Final = 60_000  # a truncated window is split down to this, then it is an error


def output_key(measurement: str, tags: Mapping[str, str]) -> str:
    """Escaped series key of an output point: ``measurement`` with the readings' tags.

    Only :data:`TAG_KEYS` are allowed (an unknown key raises ``ValueError``: a typo must not
    create a new series); empty values are left out.
    """
    unknown = set(tags) - set(TAG_KEYS)
    if unknown:
        raise ValueError(f"unknown tag keys {sorted(unknown)}; allowed: {list(TAG_KEYS)}")
    return series_key(measurement, {k: v for k, v in tags.items() if v})


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _fields(values: Mapping[str, float | int | None]) -> dict[str, FieldValue]:
    """Known figures only; ints stay ints (InfluxDB types a field by its first write)."""
    out: dict[str, FieldValue] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            out[name] = value
        elif _known(float(value)):
            out[name] = float(value)
    return out


# --- anomaly ----------------------------------------------------------------------------------


def anomaly_lines(  # noqa: PLR0917
    keys: Sequence[str],
    series: npt.ArrayLike,
    ts_ms: npt.ArrayLike,
    score: npt.ArrayLike,
    flag: npt.ArrayLike,
    reason: npt.ArrayLike,
    *,
    min_score: float = 0.0,
) -> list[str]:
    """Lines of the ``anomaly`` measurement for scored points.

    ``keys[s]`` is the :func:`output_key` of engine series ``s`` (``ANOMALY`` measurement; the
    caller keeps them, one per series, as ingest does). Points scoring below ``min_score``
    are skipped unless flagged (``min_score=0.5`` writes only abnormal points and flags: half
    the write load of scoring every reading on the store that is the pipeline's bottleneck).
    Points marked late (flag ``-1``) were not scored and are never written.
    """
    sid = np.ascontiguousarray(series, dtype=np.int64)
    ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
    sc = np.ascontiguousarray(score, dtype=np.float64)
    fl = np.ascontiguousarray(flag, dtype=np.int64)
    rc = np.ascontiguousarray(reason, dtype=np.int64)
    if not sid.shape == ts.shape == sc.shape == fl.shape == rc.shape or sid.ndim != 1:
        raise ValueError("series, ts_ms, score, flag and reason must be 1-D of equal length")
    keep = (fl >= 0) & np.isfinite(sc) & ((sc >= min_score) | (fl > 0))
    idx = np.flatnonzero(keep)
    if idx.size and (int(sid[idx].min()) < 0 or int(sid[idx].max()) >= len(keys)):
        raise ValueError("a series id has no key")
    return [
        line(keys[s], f"score={float.__repr__(v)},flag={f}i,reason={r}i", t, PRECISION)
        for s, t, v, f, r in zip(
            sid[idx].tolist(),
            ts[idx].tolist(),
            sc[idx].tolist(),
            fl[idx].tolist(),
            rc[idx].tolist(),
            strict=True,
        )
    ]


# --- depletion --------------------------------------------------------------------------------


def depletion_line(tags: Mapping[str, str], result: DepletionResult) -> str | None:
    """One ``depletion`` point at ``result.as_of_ms`` (hours counted from then)."""
    now = result.as_of_ms

    def h(ms: int | None) -> float | None:
        return None if ms is None else (ms - now) / HOUR_MS

    fields = _fields(
        {
            "stock": result.stock,
            "rate_per_hour": result.rate_per_hour,
            "trend_per_hour": result.trend_per_hour,
            "stockout_p10_h": h(result.stockout_ms[0]),
            "stockout_p50_h": h(result.stockout_ms[1]),
            "stockout_p90_h": h(result.stockout_ms[2]),
            "safety_stock_p10_h": h(result.safety_ms[0]),
            "safety_stock_p50_h": h(result.safety_ms[1]),
            "safety_stock_p90_h": h(result.safety_ms[2]),
            "reorder_in_h": h(result.reorder_by_ms),
            "reorder_qty": result.reorder_qty,
            "demand_class": int(result.demand_class),
            "model": int(result.model),
        }
    )
    if not fields:
        return None
    return line(output_key(DEPLETION, tags), format_fields(fields), now, PRECISION)


# --- plan adherence ---------------------------------------------------------------------------


def plan_line(
    tags: Mapping[str, str],
    ts_ms: int,
    *,
    adherence: Adherence | None = None,
    demand: DemandVsPlan | None = None,
    mix_drift: float | None = None,
) -> str | None:
    """One ``plan_adherence`` point at ``ts_ms`` with whichever figures are given."""
    values: dict[str, float | int | None] = {}
    if adherence is not None:
        values.update(
            produced=adherence.produced,
            planned_so_far=adherence.planned_so_far,
            attainment=adherence.attainment,
            run_rate_per_hour=adherence.run_rate_per_hour,
            projected_qty=adherence.projected_qty,
            projected_attainment=adherence.projected_attainment,
            required_rate_per_hour=adherence.required_rate_per_hour,
        )
    if demand is not None:
        values.update(
            demand_actual=demand.actual,
            demand_planned=demand.planned,
            demand_excess=demand.excess,
            demand_ratio=demand.ratio,
            buffer_used=demand.buffer_used,
        )
    if mix_drift is not None:
        values["mix_drift"] = mix_drift
    fields = _fields(values)
    if not fields:
        return None
    return line(output_key(PLAN_ADHERENCE, tags), format_fields(fields), ts_ms, PRECISION)


def baseline_line(
    tags: Mapping[str, str], ts_ms: int, flat_longest_ms: int, watched_since_ms: int
) -> str:
    """One ``signal_baseline`` point (integer fields)."""
    fields = _fields({"flat_longest_ms": flat_longest_ms, "watched_since_ms": watched_since_ms})
    return line(output_key(SIGNAL_BASELINE, tags), format_fields(fields), ts_ms, PRECISION)


# --- the writer -------------------------------------------------------------------------------


class AnalyticsWriter:
    """Writes analytics outputs to a store; keeps one ``anomaly`` series key per engine id."""

    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store
        self._keys: list[str] = []

    def set_series(self, series: int, tags: Mapping[str, str]) -> None:
        """The readings' tags of engine series ``series`` (call when the catalog learns it)."""
        if series < 0:
            raise ValueError("series ids must not be negative")
        key = output_key(ANOMALY, tags)
        if series >= len(self._keys):
            self._keys.extend([""] * (series + 1 - len(self._keys)))
        self._keys[series] = key

    async def anomalies(
        self,
        series: npt.ArrayLike,
        ts_ms: npt.ArrayLike,
        score: npt.ArrayLike,
        flag: npt.ArrayLike,
        reason: npt.ArrayLike,
        *,
        min_score: float = 0.0,
    ) -> WriteOutcome:
        """Write scored points (e.g. an :class:`~.engine.UpdateResult` with its batch)."""
        sid = np.ascontiguousarray(series, dtype=np.int64)
        known = np.array([bool(k) for k in self._keys] + [False], dtype=bool)
        unknown = ~known[np.clip(sid, -1, len(self._keys))]
        if unknown.any():
            missing = sorted(set(sid[unknown].tolist()))[:5]
            raise ValueError(f"no tags for series {missing} (call set_series first)")
        lines = anomaly_lines(self._keys, sid, ts_ms, score, flag, reason, min_score=min_score)
        return await write_isolating(self.store, lines, precision=PRECISION)

    async def update(
        self,
        series: npt.ArrayLike,
        ts_ms: npt.ArrayLike,
        result: UpdateResult,
        *,
        min_score: float = 0.0,
    ) -> WriteOutcome:
        """Write what :meth:`~.engine.AnomalyEngine.update` returned for this batch; points it
        did not score (late, or no value) are left out."""
        sid = np.ascontiguousarray(series, dtype=np.int64)
        flag = result.flag.astype(np.int64)
        flag[~result.scored] = -1
        return await self.anomalies(
            sid, ts_ms, result.score, flag, result.reason, min_score=min_score
        )

    async def depletion(
        self, items: Iterable[tuple[Mapping[str, str], DepletionResult]]
    ) -> WriteOutcome:
        """Write depletion forecasts, one ``(tags, result)`` per (site, SKU, location)."""
        lines = [ln for tags, r in items if (ln := depletion_line(tags, r)) is not None]
        return await write_isolating(self.store, lines, precision=PRECISION)

    async def baselines(
        self, items: Iterable[tuple[Mapping[str, str], int, int]], ts_ms: int
    ) -> WriteOutcome:
        """Write ``(tags, flat_longest_ms, watched_since_ms)`` per signal."""
        lines = [baseline_line(tags, ts_ms, longest, since) for tags, longest, since in items]
        return await write_isolating(self.store, lines, precision=PRECISION)

    async def plan(
        self,
        tags: Mapping[str, str],
        ts_ms: int,
        *,
        adherence: Adherence | None = None,
        demand: DemandVsPlan | None = None,
        mix_drift: float | None = None,
    ) -> WriteOutcome:
        """Write one ``plan_adherence`` point."""
        ln = plan_line(tags, ts_ms, adherence=adherence, demand=demand, mix_drift=mix_drift)
        return await write_isolating(self.store, [] if ln is None else [ln], precision=PRECISION)


# --- reading history back ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class History:
    """Points of one field read back: ``series[i]`` indexes ``tags``; ascending time per series.

    Points of one series are contiguous, so ``np.flatnonzero(series == k)`` is a slice.
    """

    measurement: str
    field: str
    tags: list[dict[str, str]]
    series: I64
    ts_ms: I64
    values: F64

    def __len__(self) -> int:
        return int(self.ts_ms.size)

    def for_engine(self, id_of: Callable[[Mapping[str, str]], int | None]) -> tuple[I64, I64, F64]:
        """``(series, ts_ms, values)`` with engine ids from ``id_of(tags)``; series it maps to
        ``None`` are dropped. Ready for :meth:`~.engine.AnomalyEngine.rebuild`."""
        ids = np.array(
            [-1 if (i := id_of(t)) is None else int(i) for t in self.tags], dtype=np.int64
        )
        if not self.tags:
            return ids, self.ts_ms.copy(), self.values.copy()
        mapped = ids[self.series]
        keep = mapped >= 0
        return mapped[keep], self.ts_ms[keep], self.values[keep]


def _tags_of(series_tags: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in series_tags.items() if v not in (None, "")}


async def read_history(
    store: TimeSeriesStore,
    measurement: str,
    *,
    days: float,
    field: str = "value",
    now_ms: int | None = None,
    where_tags: Mapping[str, str] | None = None,
    window_ms: int = DAY_MS,
    retention_policy: str | None = None,
) -> History:
    """The last ``days`` of ``field`` in ``measurement`` (``[now - days, now]``) per series.

    Read in windows of ``window_ms`` (oldest first) so no answer grows with the history; a
    window the server truncates (its ``max-row-limit``) is read again in halves. Points
    without the field (a reading stored with its quality code only) are not returned.
    """
    if not days > 0 or not math.isfinite(days):
        raise ValueError("days must be a positive number")
    if window_ms < MIN_WINDOW_MS:
        raise ValueError(f"window_ms must be at least {MIN_WINDOW_MS}")
    end = int(time.time() * 1000) if now_ms is None else int(now_ms)
    start = end - int(days * DAY_MS)
    index: dict[tuple[tuple[str, str], ...], int] = {}
    tags: list[dict[str, str]] = []
    chunks: list[list[tuple[list[int], list[float]]]] = []
    pending = [(lo, min(lo + window_ms, end + 1)) for lo in range(start, end + 1, window_ms)]
    pending.reverse()
    while pending:
        lo, hi = pending.pop()
        q = influxql.select_series(
            measurement,
            field,
            where_tags,
            lo,
            hi,
            group_by_tags=TAG_KEYS,
            retention_policy=retention_policy,
        )
        try:
            found = await store.query(q, epoch=PRECISION)
        except QueryError as exc:
            if "truncated" not in str(exc) or hi - lo <= MIN_WINDOW_MS:
                raise
            mid = lo + (hi - lo) // 2
            pending.extend([(mid, hi), (lo, mid)])  # the older half is read first
            continue
        for s in found:
            t = _tags_of(s.tags)
            key = tuple(sorted(t.items()))
            k = index.get(key)
            if k is None:
                k = index[key] = len(tags)
                tags.append(t)
                chunks.append([])
            ti = s.columns.index("time")
            vi = s.columns.index(field)
            # a non-numeric value (another writer's string or bool field) is not a reading
            rows = [
                (r[ti], r[vi])
                for r in s.values
                if isinstance(r[vi], int | float) and not isinstance(r[vi], bool)
            ]
            if rows:
                chunks[k].append(([int(r[0]) for r in rows], [float(r[1]) for r in rows]))
    series_parts: list[I64] = []
    ts_parts: list[I64] = []
    val_parts: list[F64] = []
    for k, parts in enumerate(chunks):
        for ts_list, val_list in parts:
            series_parts.append(np.full(len(ts_list), k, dtype=np.int64))
            ts_parts.append(np.asarray(ts_list, dtype=np.int64))
            val_parts.append(np.asarray(val_list, dtype=np.float64))
    if not ts_parts:
        empty_i = np.zeros(0, dtype=np.int64)
        return History(measurement, field, tags, empty_i, empty_i.copy(), np.zeros(0))
    return History(
        measurement,
        field,
        tags,
        np.concatenate(series_parts),
        np.concatenate(ts_parts),
        np.concatenate(val_parts),
    )


async def rebuild_engine(
    engine: AnomalyEngine,
    store: TimeSeriesStore,
    measurements: Iterable[str],
    id_of: Callable[[Mapping[str, str]], int | None],
    *,
    days: float,
    field: str = "value",
    now_ms: int | None = None,
    window_ms: int = DAY_MS,
) -> int:
    """Replay the last ``days`` of every measurement into ``engine`` (no live alerts);
    returns the points folded in. Call before the ingest stream starts feeding the engine."""
    end = int(time.time() * 1000) if now_ms is None else now_ms
    total = 0
    for measurement in measurements:
        hist = await read_history(
            store, measurement, days=days, field=field, now_ms=end, window_ms=window_ms
        )
        series, ts, values = hist.for_engine(id_of)
        if series.size:
            total += engine.rebuild(series, ts, values)
    return total
