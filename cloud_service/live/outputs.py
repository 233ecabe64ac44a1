"""The live analytics' figures written back to InfluxDB, beside the readings.

Forecasts (``depletion``) and plan figures (``plan_adherence``: per counter, and per line
with its ``mix_drift`` where a line is counted per SKU) at each refresh, the anomaly onsets
(``anomaly``) as they happen, and each signal's flat-run baseline (``signal_baseline``, when
it changed and hourly: what the start-up rebuild restores), through
:class:`~..analytics.storage.AnalyticsWriter` (its own measurements, the readings' tags),
so dashboards chart them next to the data. A failed write is logged and counted, never
retried into a pile: the next refresh writes newer figures.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from cloud_service.analytics.engine import AnomalyEvents
from cloud_service.analytics.storage import AnalyticsWriter
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.series import SeriesInfo
from cloud_service.storage.base import TimeSeriesStore
from cloud_service.storage.errors import StorageError

log = logging.getLogger(__name__)

BASELINES_EVERY_MS = 3_600_000  # all of them hourly (the rebuild reads stock_history_days)


def tags_of(info: SeriesInfo) -> dict[str, str]:
    spec = info.spec
    tags = {"site": info.site, "gateway": info.gateway, "signal": info.signal}
    if spec is not None:
        for key, value in (("sku", spec.sku), ("location", spec.location), ("line", spec.line)):
            if value:
                tags[key] = value
    return tags


class OutputWriter:
    def __init__(self, live: LiveAnalytics, store: TimeSeriesStore) -> None:
        self.live = live
        self.writer = AnalyticsWriter(store)
        self._known = 0  # series ids whose tags the writer has
        self._onsets: list[AnomalyEvents] = []
        self.points = 0
        self.failures = 0
        self._baselines: dict[int, tuple[int, int]] = {}  # as last written
        self._baselines_all_ms = -(10**15)  # when every baseline was last written

    def on_anomalies(self, events: AnomalyEvents) -> None:
        """Keep onsets (live and replayed) until the next flush."""
        self._onsets.append(events)

    async def flush(self, now_ms: int) -> None:
        live = self.live
        infos = live.index.infos
        while self._known < len(infos):
            self.writer.set_series(self._known, tags_of(infos[self._known]))
            self._known += 1
        onsets, self._onsets = self._onsets, []
        try:
            if onsets:
                sid = np.concatenate([e.series for e in onsets])
                outcome = await self.writer.anomalies(
                    sid,
                    np.concatenate([e.ts_ms for e in onsets]),
                    np.concatenate([e.score for e in onsets]),
                    np.ones(sid.size, dtype=np.int64),
                    np.concatenate([e.reason for e in onsets]),
                )
                self.points += outcome.written
            outcome = await self.writer.depletion(
                (tags_of(info), r) for info, r in live.depletion_results
            )
            self.points += outcome.written
            for info, a in live.adherence_results:
                self.points += (await self.writer.plan(tags_of(info), now_ms, adherence=a)).written
            for t in live.line_totals:
                outcome = await self.writer.plan(
                    t.tags, now_ms, adherence=t.adherence, mix_drift=t.mix_drift
                )
                self.points += outcome.written
            for info, d in live.demand_results:
                if math.isfinite(d.ratio):
                    self.points += (await self.writer.plan(tags_of(info), now_ms, demand=d)).written
            await self._write_baselines(now_ms)
        except StorageError as exc:
            self.failures += 1
            log.warning("analytics write-back failed (%s); the next refresh writes again", exc)

    async def _write_baselines(self, now_ms: int) -> None:
        every = now_ms - self._baselines_all_ms >= BASELINES_EVERY_MS
        changed = [
            (sid, longest, since)
            for sid, longest, since in self.live.flat_baselines()
            if every or self._baselines.get(sid) != (longest, since)
        ]
        if not changed:
            return
        infos = self.live.index.infos
        outcome = await self.writer.baselines(
            ((tags_of(infos[sid]), longest, since) for sid, longest, since in changed), now_ms
        )
        self.points += outcome.written
        for sid, longest, since in changed:
            self._baselines[sid] = (longest, since)
        if every:
            self._baselines_all_ms = now_ms
