"""Polling sources: one task per source reads it whenever one of its signals is due.

:class:`PollSchedule` is pure. :class:`Poller` is the shell around one source: it keeps only
the due signals' readings, turns an exception out of ``Source.read`` (a bug) into
COMM_FAILURE readings so a signal never goes silent, keeps per-source health counters, and
stops *gracefully* (after the read in progress has been handed over), which is what lets a
config reload replace a source without losing a reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from edge_agent.config import AgentConfig, SignalConfig, SourceConfig
from edge_agent.sources import Source, build_source, failed_readings
from edge_agent.status import SourceStatus
from shared.messages import Quality, Reading

log = logging.getLogger(__name__)


class Clock(Protocol):
    def wall_ms(self) -> int: ...

    def mono_ms(self) -> int: ...


class PollSchedule:
    """When each signal of one source is next due; every signal is due at ``start_ms``.

    A signal due at ``t`` with period ``p`` is next due at ``t + p``; slots missed while the
    loop was busy are skipped (no burst of catch-up reads), keeping the phase.
    """

    def __init__(self, periods_ms: Mapping[str, int], start_ms: int) -> None:
        if not periods_ms:
            raise ValueError("a poll schedule needs at least one signal")
        bad = {s: p for s, p in periods_ms.items() if p <= 0}
        if bad:
            raise ValueError(f"periods must be > 0 ms: {bad}")
        self._periods = dict(periods_ms)
        self._next = dict.fromkeys(self._periods, start_ms)

    def next_due_ms(self) -> int:
        return min(self._next.values())

    def take_due(self, now_ms: int) -> frozenset[str]:
        """The signals due at ``now_ms``; their next slots are advanced."""
        due = frozenset(s for s, t in self._next.items() if t <= now_ms)
        for s in due:
            period = self._periods[s]
            nxt = self._next[s] + period
            if nxt <= now_ms:
                nxt += ((now_ms - nxt) // period + 1) * period
            self._next[s] = nxt
        return due


#: Receives a source's readings: (poller, readings).
Sink = Callable[["Poller", list[Reading]], None]


class Poller:
    """Polls one source on its signals' periods until :meth:`stop`."""

    def __init__(
        self,
        config: SourceConfig,
        signals: Sequence[SignalConfig],
        *,
        clock: Clock,
        sink: Sink,
        source: Source | None = None,
    ) -> None:
        self.config = config
        self.signals = tuple(signals)
        self.source = source if source is not None else build_source(config, signals)
        self.historical = config.type == "csv" and config.mode == "backfill"
        self.periods_ms = {s.id: max(1, round(s.period_s * 1000)) for s in signals}
        self.health = SourceStatus(id=config.id, type=config.type)
        self._clock = clock
        self._sink = sink
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return self.config.id

    def same_as(self, config: SourceConfig, signals: Sequence[SignalConfig]) -> bool:
        """Whether a reloaded config leaves this source and its signals exactly as they are."""
        return config == self.config and tuple(signals) == self.signals

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"poll:{self.id}")

    async def stop(self) -> None:
        """Finish the read in progress (its readings are delivered), then close the source."""
        self._stop.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:
                log.exception("poller %s failed", self.id)
        try:
            await self.source.close()
        except Exception:
            log.exception("closing source %s failed", self.id)

    async def _run(self) -> None:
        schedule = PollSchedule(self.periods_ms, self._clock.mono_ms())
        while not self._stop.is_set():
            delay_ms = schedule.next_due_ms() - self._clock.mono_ms()
            if delay_ms > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay_ms / 1000)
                if self._stop.is_set():
                    return
            due = schedule.take_due(self._clock.mono_ms())
            if due:
                readings = await self._read(due)
                try:
                    self._sink(self, readings)
                except Exception as exc:  # a bug downstream must not stop this source
                    log.exception("poller %s: delivering readings failed", self.id)
                    self.health.exceptions += 1
                    self.health.last_error = f"{type(exc).__name__}: {exc}"

    async def _read(self, due: frozenset[str]) -> list[Reading]:
        now = self._clock.wall_ms()
        h = self.health
        h.reads += 1
        try:
            readings = await self.source.read(now)
        except Exception as exc:
            # Sources report comm failures as readings; an exception is a bug. Keep the other
            # sources running and make the gap visible as data.
            log.exception("source %s raised; reporting COMM_FAILURE", self.id)
            h.exceptions += 1
            h.last_error = f"{type(exc).__name__}: {exc}"
            readings = failed_readings(sorted(due), now, Quality.COMM_FAILURE)
        if not self.historical:
            readings = [r for r in readings if r.signal in due]
        self._account(readings, now)
        return readings

    def _account(self, readings: list[Reading], now_ms: int) -> None:
        h = self.health
        h.readings += len(readings)
        failures = sum(1 for r in readings if r.quality == Quality.COMM_FAILURE)
        bad = sum(1 for r in readings if r.quality == Quality.BAD)
        h.comm_failures += failures
        h.bad += bad
        if readings and failures + bad < len(readings):
            h.last_good_ms = now_ms
        error = getattr(self.source, "last_error", None)
        if isinstance(error, str) and error:
            h.last_error = error


def build_pollers(config: AgentConfig, *, clock: Clock, sink: Sink) -> list[Poller]:
    pollers: list[Poller] = []
    for source_config in config.sources:
        signals = config.signals_of(source_config.id)
        if not signals:
            log.warning("source %s has no signals; not polled", source_config.id)
            continue
        pollers.append(Poller(source_config, signals, clock=clock, sink=sink))
    return pollers
