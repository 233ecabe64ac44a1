"""Persist one prepared batch: time-series write, dead letters, registry; retry until done.

Outages are not errors here: while a store is down or refusing service this keeps retrying
with capped, jittered back-off and the caller acks nothing, so the broker keeps the messages
(persistent session) and stops sending once ``receive_maximum`` are un-acked. That is the
back-pressure: memory stays bounded, nothing is dropped, and the first successful retry
resumes everything by itself. Only a bug (an unexpected exception, or a metadata error that
retrying cannot fix) escapes, and then the worker stops without acking.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from cloud_service.deadletter import DeadLetter, DeadLetterStore
from cloud_service.errors import MetadataError
from cloud_service.ingest.pipeline import Prepared
from cloud_service.ingest.records import (
    BirthRecord,
    GatewayActivity,
    SignalActivity,
    StateRecord,
)
from cloud_service.ingest.sequence import StreamSnapshot
from cloud_service.metrics import IngestMetrics
from cloud_service.storage.errors import StorageError, TargetNotFound, WriteRejected
from cloud_service.storage.retry import Backoff
from shared.errors import Reason

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMESERIES: Final = "timeseries"
METADATA: Final = "metadata"


class WritableStore(Protocol):
    """The part of ``TimeSeriesStore`` ingest needs."""

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None: ...

    async def write_isolating(self, lines: Sequence[str]) -> Any: ...

    async def ensure_database(self) -> None: ...


class RegistryWriter(Protocol):
    async def record(
        self, births: Sequence[BirthRecord], states: Sequence[StateRecord]
    ) -> None: ...


class ActivityWriter(Protocol):
    async def save_activity(
        self,
        gateway_rows: Sequence[GatewayActivity],
        signal_rows: Sequence[SignalActivity],
        streams: Sequence[StreamSnapshot],
    ) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class WriteHealth:
    """The condition of each target, for status and metrics."""

    failing: dict[str, str] = field(default_factory=dict)  # target -> last error
    retries: int = 0

    @property
    def backpressure(self) -> bool:
        return bool(self.failing)


class Persister:
    def __init__(
        self,
        store: WritableStore,
        dead_letters: DeadLetterStore,
        registry: RegistryWriter | None,
        metrics: IngestMetrics,
        backoff: Backoff,
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.registry = registry
        self.metrics = metrics
        self.backoff = backoff
        self.health = WriteHealth()
        self.points_written = 0
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography

    async def persist(self, prepared: Prepared, after: asyncio.Future[Any] | None = None) -> None:
        """Return once everything in ``prepared`` is durable (lines, letters, records).

        ``after``: the persist of the write received before this one, when it may still be
        running. Lines and dead letters are stored concurrently with it, but births and states
        only once it is done, so they reach the registry in arrival order: a later state is
        never overwritten by an earlier one that was slower to store its lines. (The registry
        also refuses records older than its row, for several workers.)
        """
        if prepared.lines:
            written = await self._retrying(TIMESERIES, lambda: self._write_lines(prepared))
            self.points_written += written
            self.metrics.points.inc(written)
        if prepared.dead:
            await self._retrying(METADATA, lambda: self.dead_letters.put_many(prepared.dead))
            for letter in prepared.dead:
                self.metrics.dead_letters.labels(letter.reason.value).inc()
                log.info(
                    "dead letter %s on %s: %s", letter.reason.value, letter.topic, letter.detail
                )
        if after is not None and not after.done():
            await asyncio.wait({after})  # (never cancels it; done even if it failed)
        if self.registry is not None and (prepared.births or prepared.states):
            registry = self.registry
            await self._retrying(
                METADATA, lambda: registry.record(prepared.births, prepared.states)
            )
        self.metrics.writes.inc()

    async def _write_lines(self, prepared: Prepared) -> int:
        try:
            await self.store.write(prepared.lines)
        except WriteRejected:
            outcome = await self.store.write_isolating(prepared.lines)
            received = now_ms()
            for rejected in outcome.rejected:
                topic, gateway = prepared.source_of(rejected.index)
                prepared.dead.append(
                    DeadLetter(
                        Reason.STORE_REJECTED,
                        str(rejected.error),
                        topic,
                        gateway,
                        received,
                        rejected.line.encode(),
                        rejected.index,
                    )
                )
            return int(outcome.written)
        except TargetNotFound:
            await self.store.ensure_database()  # dropped under us: recreate, then retry
            raise
        return len(prepared.lines)

    async def _retrying(self, target: str, op: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                result = await op()
            except (StorageError, MetadataError) as exc:
                if isinstance(exc, MetadataError) and not exc.retryable:
                    raise
                attempt += 1
                self._failing(target, exc, attempt)
                await asyncio.sleep(self.backoff.delay(min(attempt, 30), self._rng))
                continue
            if target in self.health.failing:
                del self.health.failing[target]
                log.info("%s writes recovered after %d retries", target, attempt)
                self.metrics.store_up.labels(target).set(1)
                self.metrics.backpressure.set(int(self.health.backpressure))
            return result

    def _failing(self, target: str, exc: Exception, attempt: int) -> None:
        if attempt == 1:
            log.warning("%s write failed; holding acks and retrying: %s", target, exc)
        self.health.failing[target] = f"{type(exc).__name__}: {exc}"
        self.health.retries += 1
        self.metrics.retries.labels(target).inc()
        self.metrics.store_up.labels(target).set(0)
        self.metrics.backpressure.set(1)
