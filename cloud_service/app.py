"""The app factory: settings in, wired services out. The one place that builds backends."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from cloud_service.deadletter import JsonlDeadLetters
from cloud_service.ingest.worker import IngestWorker
from cloud_service.settings import CloudSettings
from cloud_service.storage.influx import InfluxSettings, InfluxStore

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
    )


@dataclass
class CloudApp:
    settings: CloudSettings
    store: InfluxStore
    dead_letters: JsonlDeadLetters
    ingest: IngestWorker

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; waits for the store to answer before ingesting."""
        await self._ensure_database(stop)
        try:
            await self.ingest.run(stop)
        finally:
            self.dead_letters.close()
            await self.store.aclose()

    async def _ensure_database(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                await self.store.ensure_database()
            except Exception as exc:  # any failure: report and retry
                log.warning("time-series store not ready (%s); retrying in %.1fs", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, 10.0)
            else:
                return


def build_app(settings: CloudSettings) -> CloudApp:
    store = InfluxStore(influx_settings(settings))
    dead_letters = JsonlDeadLetters(
        settings.ingest.dead_letter_file, settings.ingest.dead_letter_max_bytes
    )
    return CloudApp(settings, store, dead_letters, IngestWorker(settings, store, dead_letters))
