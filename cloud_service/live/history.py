"""Start-up: the live analytics rebuilt from what InfluxDB already holds.

Without it a restart would forget every stock trail (forecasts need days of history) and
every anomaly baseline. Runs after the catalog is loaded and before ingest starts feeding,
so history is folded in first and live data after it, in event-time order (the broker keeps
incoming messages meanwhile). Trails are read downsampled (the last value per hour of stock,
per minute of counters: what the trails keep anyway); the anomaly engine gets the raw points
of the last ``rebuild_hours``, fewer when the fleet would exceed ``rebuild_max_points``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cloud_service.analytics.storage import TAG_KEYS, read_history
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.trails import HOUR_MS
from cloud_service.storage import influxql
from cloud_service.storage.base import TimeSeriesStore
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


async def rebuild(
    live: LiveAnalytics, store: TimeSeriesStore, now_ms: int | None = None
) -> RebuildReport:
    t0 = time.perf_counter()
    now = int(time.time() * 1000) if now_ms is None else now_ms
    s = live.settings
    ids = _lookup(live)
    trail_points = 0
    plans = (
        (SignalKind.STOCK_LEVEL, "1h", s.stock_history_days * 24 * HOUR_MS),
        (SignalKind.PRODUCTION_COUNT, "1m", s.counter_history_h * HOUR_MS),
    )
    for kind, interval, span_ms in plans:
        q = influxql.select_aggregate(
            kind.value, "value", "last", interval,
            start_ms=now - span_ms, end_ms=now + 1, group_by_tags=TAG_KEYS,
        )  # fmt: skip
        for series in await store.query(q, epoch="ms"):
            sid = _id(ids, {k: str(v) for k, v in series.tags.items() if v})
            trail = live.trail(sid) if sid is not None else None
            if trail is None:
                continue
            for t, v in series.values:
                if v is not None:
                    trail.add(int(t), float(v))
                    trail_points += 1
    engine_points = 0
    hours = engine_window_h(live)
    if hours > 0:
        for kind in SignalKind:
            hist = await read_history(
                store, kind.value, days=hours / 24, now_ms=now, window_ms=HOUR_MS
            )
            series_ids, ts, values = hist.for_engine(lambda tags: _id(ids, tags))
            if series_ids.size:
                engine_points += live.engine.rebuild(series_ids, ts, values)
    report = RebuildReport(trail_points, engine_points, time.perf_counter() - t0)
    log.info(
        "live analytics rebuilt from history: %d trail points, %d engine points in %.1fs",
        report.trail_points, report.engine_points, report.seconds,
    )  # fmt: skip
    return report


__all__ = ["RebuildReport", "rebuild"]
