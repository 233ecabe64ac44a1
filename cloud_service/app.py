"""The app factory: settings in, wired services out. The one place that builds backends.

``build_app`` does no I/O; ``CloudApp.run`` migrates the metadata store, warms the ingest
core from it (catalog, sequence state), waits for the time-series store, then ingests until
stopped, saving activity (last-seen times, health, sequence state) periodically.

Start-up order and silence: health restored from the registry is held (no silence checks,
no gateway or no-data alert on figures from before the cloud's downtime) while the live
loop starts and rebuilds; when ingest has connected to the broker, health resumes and every
gateway's and signal's silence counts from that moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from cloud_service.errors import MetadataError
from cloud_service.ingest.health import HealthCore
from cloud_service.ingest.worker import IngestWorker
from cloud_service.ingest.writer import now_ms
from cloud_service.live.runtime import LiveRuntime
from cloud_service.metadata import MetadataStore, SqlDeadLetterStore
from cloud_service.metrics import IngestMetrics, serve
from cloud_service.settings import CloudSettings
from cloud_service.storage.influx import InfluxSettings, InfluxStore
from shared.messages import GatewayState

log = logging.getLogger(__name__)


def influx_settings(settings: CloudSettings) -> InfluxSettings:
    i = settings.influx
    return InfluxSettings(
        url=i.url,
        database=i.database,
        retention_policy=i.retention_policy,
        username=i.username,
        password=i.password.get_secret_value() if i.password else None,
        token=i.token.get_secret_value() if i.token else None,
        timeout_s=i.timeout_s,
        gzip=i.gzip,
        max_retries=i.max_retries,
    )


@dataclass
class CloudApp:
    settings: CloudSettings
    store: InfluxStore
    metadata: MetadataStore
    ingest: IngestWorker
    metrics: IngestMetrics
    runtime: LiveRuntime | None = None  # analytics, alerts, API (None: ingest only)
    metrics_port: int | None = None
    _metrics_server: Any = field(default=None, repr=False)

    @property
    def dead_letters(self) -> SqlDeadLetterStore:
        return self.metadata.dead_letters

    def status(self) -> dict[str, Any]:
        """Condition of the service (for an API health endpoint and tests)."""
        out: dict[str, Any] = {
            "ingest": self.ingest.stats.as_dict(),
            "metrics_port": self.metrics_port,
        }
        r = self.runtime
        if r is not None:
            out["live"] = {
                "series": len(r.live.index),
                "points": r.live.points,
                "forecast_errors": r.live.forecast_errors,
                "refresh_errors": r.live.refresh_errors,
                "monitor_failures": r.monitor.failures if r.monitor else 0,
                "evaluations": r.monitor.evaluations if r.monitor else 0,
                "open_alerts": len(r.service.open_alerts()) if r.service else 0,
            }
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; waits for both stores to answer before ingesting."""
        try:
            if not await _until_ready(stop, "metadata store", self._start_metadata):
                return
            if not await _until_ready(stop, "time-series store", self.store.ensure_database):
                return
            if self.settings.ingest.dead_letter_file is not None:
                log.warning("[ingest] dead_letter_file is ignored: dead letters are in [metadata]")
            m = self.settings.metrics
            if m.port is not None:
                self._metrics_server, self.metrics_port = serve(self.metrics, m.host, m.port)
                log.info("metrics on http://%s:%d/metrics", m.host, self.metrics_port)
            live: asyncio.Task[None] | None = None
            if self.runtime is not None:
                await self.runtime.start()
                live = asyncio.create_task(self.runtime.run(stop), name="live")
            # The catalog, series index and histories live as long as the process: out of the
            # collector's full passes, which otherwise stall the event loop for ~0.1 s with a
            # fleet loaded (bench/bench_live.py).
            gc.freeze()
            # Never cancelled: a cancel inside an SQLite transaction can leave the file locked.
            done = asyncio.Event()
            flusher = asyncio.create_task(self._flush_periodically(stop, done))
            resume = asyncio.create_task(self._wake_when_connected(stop), name="wake")
            try:
                await self.ingest.run(stop)
            finally:
                resume.cancel()
                done.set()
                await flusher
                await self._flush()
                if live is not None:
                    stop.set()
                    await live
        finally:
            if self._metrics_server is not None:
                self._metrics_server.shutdown()
                self._metrics_server.server_close()
            await self.metadata.aclose()
            await self.store.aclose()

    def _health_cores(self) -> list[HealthCore]:
        """Ingest's health, and the live loop's own when it has a subscription of its own."""
        cores = [self.ingest.health]
        if self.runtime is not None and self.runtime.health is not self.ingest.health:
            cores.append(self.runtime.health)
        return cores

    async def _start_metadata(self) -> None:
        await self.metadata.migrate()
        cores = self._health_cores()
        for health in cores:  # until ingest connects, silence is the cloud's downtime
            health.hold()
        for record in await self.metadata.registry.load_births():
            self.ingest.core.learn(record.site, record.birth)
            for health in cores:
                health.birth(record.site, record.birth, now_ms())
        # Known gateway states too: a gateway offline before the restart is offline now (until
        # its retained state says otherwise), so its open alert does not clear and come back.
        for g in await self.metadata.registry.gateways():
            offline = g["state"] == GatewayState.OFFLINE.value
            for health in cores:
                health.restore(
                    g["site"],
                    g["gateway"],
                    offline_since_ms=(g["state_ms"] or now_ms()) if offline else None,
                    last_seen_ms=g["last_seen_ms"],
                )
        self.ingest.core.tracker.restore(await self.metadata.registry.load_streams())

    async def _wake_when_connected(self, stop: asyncio.Event) -> None:
        """Once ingest has connected (its worker resumes health then: silence counts from
        that moment, not from before the cloud's downtime), the live loop looks at once."""
        while not stop.is_set():
            try:
                await self.ingest.wait_connected(1.0)
            except TimeoutError:
                continue
            log.info("ingest connected: gateway and signal silence counted from now")
            if self.runtime is not None:
                self.runtime.wake()
            return

    async def _flush_periodically(self, stop: asyncio.Event, done: asyncio.Event) -> None:
        m = self.settings.metadata
        loop = asyncio.get_running_loop()
        next_activity = loop.time() + m.activity_interval_s
        while True:
            due = loop.time() + m.flush_interval_s
            while loop.time() < due:  # short naps: notice a stop without being cancelled
                if stop.is_set() or done.is_set():
                    return
                await asyncio.sleep(min(0.1, m.flush_interval_s))
            activity = loop.time() >= next_activity
            if activity:
                next_activity = loop.time() + m.activity_interval_s
            await self._flush(activity=activity)

    async def _flush(self, *, activity: bool = True) -> None:
        try:
            await self.ingest.flush(self.metadata.registry, activity=activity)
        except MetadataError as exc:  # activity is advisory; the next flush carries on
            log.warning("could not save ingest activity: %s", exc)


async def _until_ready(
    stop: asyncio.Event, what: str, attempt: Callable[[], Awaitable[None]]
) -> bool:
    delay = 0.5
    while not stop.is_set():
        try:
            await attempt()
        except Exception as exc:  # any failure: report and retry
            log.warning("%s not ready (%s); retrying in %.1fs", what, exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)
        else:
            return True
    return False


def build_app(settings: CloudSettings) -> CloudApp:
    store = InfluxStore(influx_settings(settings))
    metadata = MetadataStore.from_settings(settings.metadata)
    metrics = IngestMetrics()
    worker = IngestWorker(
        settings, store, metadata.dead_letters, registry=metadata.registry, metrics=metrics
    )
    app = CloudApp(settings, store, metadata, worker, metrics)
    if settings.live.enabled:
        app.runtime = LiveRuntime.build(settings, metadata.engine, worker, store)
        app.runtime.status = app.status
    return app
