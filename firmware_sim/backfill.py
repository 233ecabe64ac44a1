"""Backfill: months of simulated history written straight into the cloud's time-series store.

The world runs as fast as the CPU allows from ``start`` to ``end``; every sample becomes one
line of line protocol in exactly the shape the cloud's ingest writes (measurement = signal
kind, tags ``site``, ``gateway``, ``signal``, ``sku``, ``location``, ``line``, fields ``value``
and ``q``), so analytics cannot tell backfilled history from live data. Lines go through the
cloud's storage interface (:class:`cloud_service.storage.InfluxStore` or anything with the same
``write``) in batches, with two writes in flight so influxd is never idle between requests
(field notes: one write at a time leaves it waiting). Ground truth is recorded as in a live run.

Sensor periods are stretched to ``sample_floor_s`` (default 60 s): a year of 1 s samples of
ten signals would be 315 million points. Same seed, start and floor: same points.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from firmware_sim.core.calendar import HOUR_MS
from firmware_sim.core.sensors import Sample
from firmware_sim.core.truth import Truth
from firmware_sim.core.world import World
from firmware_sim.scenario.model import Scenario

DEFAULT_SAMPLE_FLOOR_S = 60.0


class LineStore(Protocol):
    """What the backfill needs of ``cloud_service.storage.TimeSeriesStore``."""

    async def write(self, lines: bytes | Sequence[str], *, precision: str = "ms") -> None: ...


@dataclass(slots=True)
class BackfillStats:
    points: int = 0
    batches: int = 0
    truth_records: int = 0
    elapsed_s: float = 0.0

    @property
    def points_per_s(self) -> float:
        return self.points / self.elapsed_s if self.elapsed_s else 0.0


def series_keys(scenario: Scenario, gateway: str | None = None) -> dict[str, str]:
    """Signal id -> escaped ``measurement,tags`` as the cloud's ingest writes them.

    The gateway tag is ``gateway`` if given, else what publishes the signal live: its smart
    sensor's gateway id, or the scenario's ``gateway`` (the edge agent) for the others.
    """
    from cloud_service.storage.line_protocol import series_key  # noqa: PLC0415 - only the backfill needs it

    devices = {name: d.gateway for d in scenario.mqtt_devices for name in d.signals}
    keys = {}
    for sig in scenario.signals:
        tags = {
            "site": scenario.site,
            "gateway": gateway or devices.get(sig.id, scenario.gateway),
            "signal": sig.id,
            "sku": sig.sku or "",
            "location": sig.warehouse or "",
            "line": sig.line or "",
        }
        keys[sig.id] = series_key(sig.kind.value, tags)
    return keys


def sample_line(key: str, sample: Sample) -> str:
    if sample.value is None:
        return f"{key} q={int(sample.quality)}i {sample.ts}"
    return f"{key} value={float(sample.value)!r},q={int(sample.quality)}i {sample.ts}"


async def backfill(
    scenario: Scenario,
    store: LineStore,
    *,
    seed: int,
    start_ms: int,
    end_ms: int,
    gateway: str | None = None,
    sample_floor_s: float = DEFAULT_SAMPLE_FLOOR_S,
    truth: Truth | None = None,
    batch_lines: int = 10_000,
    concurrency: int = 2,
    progress: Callable[[int, int, int], None] | None = None,
) -> BackfillStats:
    """Simulate ``[start_ms, end_ms)`` and write every sample; ``progress(done, total, points)``
    is called as simulated time advances (ms done and total)."""
    stats = BackfillStats()
    started = time.monotonic()
    truth = truth if truth is not None else Truth(keep=False)
    truth.add_sink(lambda _: _count(stats))
    world = World(
        scenario, seed=seed, start_ms=start_ms, sample_floor_s=sample_floor_s, truth=truth
    )
    keys = series_keys(scenario, gateway)
    buffer: list[str] = []
    world.add_listener(lambda s: buffer.append(sample_line(keys[s.signal], s)))
    slots = asyncio.Semaphore(concurrency)
    pending: set[asyncio.Task[None]] = set()
    failures: list[Exception] = []

    async def write(lines: list[str]) -> None:
        try:
            await store.write(lines)
        except Exception as exc:  # re-raised by the loop below, with the others cancelled
            failures.append(exc)
        finally:
            slots.release()

    total = end_ms - start_ms
    t = start_ms
    try:
        while t < end_ms:
            t = min(t + HOUR_MS, end_ms)
            world.advance_to(t - 1 if t == end_ms else t)  # [start, end): nothing at end_ms
            while len(buffer) >= batch_lines or (t == end_ms and buffer):
                chunk, buffer[:] = buffer[:batch_lines], buffer[batch_lines:]
                await slots.acquire()
                if failures:
                    raise failures[0]
                task = asyncio.create_task(write(chunk))
                pending.add(task)
                task.add_done_callback(pending.discard)
                stats.points += len(chunk)
                stats.batches += 1
            if progress is not None:
                progress(t - start_ms, total, stats.points)
            await asyncio.sleep(0)
        await asyncio.gather(*pending)
        if failures:
            raise failures[0]
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    stats.elapsed_s = time.monotonic() - started
    return stats


def _count(stats: BackfillStats) -> None:
    stats.truth_records += 1
