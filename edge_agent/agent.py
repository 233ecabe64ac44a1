"""The agent's asyncio loop: poll sources on their signals' periods, batch, publish.

One task per source polls it whenever one of its signals is due (:class:`PollSchedule`, pure)
and keeps only the due signals' readings; the batcher (pure) turns readings into numbered
batches, flushed by size at once and by age from a loop timer; the publisher ships them.
SIGTERM/SIGINT stop the loop: the last partial batch is flushed, a retained *offline* state is
published and the MQTT session closed cleanly.

There is no spool yet: a batch paho cannot queue (its in-memory queue is full, e.g. after a
long broker outage) is dropped and counted, leaving a gap in ``seq`` the cloud can see; and a
process restart loses what paho had queued. A later issue adds the crash-safe SQLite spool,
which will keep batches until the cloud's ``Ack`` and replay them.

Time: readings carry the wall clock (epoch ms, device time); schedules and batch ages use the
monotonic clock, so a wall-clock step (a Raspberry Pi without RTC meeting NTP) neither stalls
nor floods the loop; such a step is reported in the next batch's ``clock_step_ms``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Final, Protocol

from edge_agent.batcher import Batcher
from edge_agent.config import AgentConfig
from edge_agent.errors import PublishError, QueueFullError
from edge_agent.publisher import MqttPublisher
from edge_agent.sources import Source, build_source, failed_readings
from shared.messages import Birth, Quality, Reading, SignalSpec, TelemetryBatch

log = logging.getLogger(__name__)

#: A wall-clock step at least this large (vs. the monotonic clock) is reported.
CLOCK_STEP_THRESHOLD_MS: Final = 1000
#: How long a graceful stop waits for the broker to acknowledge what is queued.
STOP_TIMEOUT_S: Final = 5.0


def agent_version() -> str:
    """The installed ``flightdeck`` distribution's version (announced in the birth message).

    Read from package metadata rather than ``edge_agent.__version__``: under pytest the
    ``tests/edge_agent`` folder can shadow the package root (``__init__`` not executed).
    """
    try:
        return metadata.version("flightdeck")
    except metadata.PackageNotFoundError:  # pragma: no cover - a bare checkout
        return "0+unknown"


# -- pure helpers ---------------------------------------------------------------------------


class Clock(Protocol):
    def wall_ms(self) -> int: ...

    def mono_ms(self) -> int: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def mono_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


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


class ClockWatch:
    """Detects steps of the wall clock against the monotonic clock."""

    def __init__(self, threshold_ms: int = CLOCK_STEP_THRESHOLD_MS) -> None:
        self.threshold_ms = threshold_ms
        self._offset: int | None = None

    def observe(self, wall_ms: int, mono_ms: int) -> int:
        """The step since the last observation (signed ms), or 0 if below the threshold."""
        offset = wall_ms - mono_ms
        previous, self._offset = self._offset, offset
        if previous is None:
            return 0
        step = offset - previous
        return step if abs(step) >= self.threshold_ms else 0


def new_boot_id(started_ms: int) -> str:
    """A per-boot id: start time plus randomness (the clock may be wrong right after boot)."""
    return f"{started_ms}-{secrets.token_hex(4)}"


def build_birth(config: AgentConfig, boot: str, started_ms: int) -> Birth:
    return Birth(
        gateway=config.gateway,
        site=config.site,
        boot=boot,
        agent_version=agent_version(),
        config_hash=config.config_hash(),
        started_ms=started_ms,
        signals=[
            SignalSpec(
                id=s.id,
                kind=s.kind,
                unit=s.unit,
                sku=s.sku,
                location=s.location,
                line=s.line,
                period_s=s.period_s,
                description=s.description,
            )
            for s in config.signals
        ],
    )


# -- the loop -------------------------------------------------------------------------------


class TelemetrySink(Protocol):
    """Where batches go (the MQTT publisher); raises ``PublishError`` when it refuses one."""

    def publish_batch(self, batch: TelemetryBatch) -> int: ...


@dataclass(frozen=True, slots=True)
class SourceBinding:
    """A source and the polling period (ms) of each signal it reads."""

    source_id: str
    source: Source
    periods_ms: Mapping[str, int]


def build_bindings(config: AgentConfig) -> list[SourceBinding]:
    bindings: list[SourceBinding] = []
    for source_config in config.sources:
        signals = config.signals_of(source_config.id)
        if not signals:
            log.warning("source %s has no signals; not polled", source_config.id)
            continue
        bindings.append(
            SourceBinding(
                source_id=source_config.id,
                source=build_source(source_config, signals),
                periods_ms={s.id: max(1, round(s.period_s * 1000)) for s in signals},
            )
        )
    return bindings


@dataclass(slots=True)
class AgentStats:
    readings: int = 0
    batches_published: int = 0
    batches_dropped: int = 0
    readings_dropped: int = 0  # in dropped batches (no spool yet)
    source_errors: int = 0  # unexpected exceptions out of Source.read (bugs)
    clock_steps: int = 0
    dropped_by_signal: dict[str, int] = field(default_factory=dict)


class Agent:
    """Polls bindings, batches and publishes until ``stop`` is set; then flushes the rest."""

    def __init__(
        self,
        *,
        batcher: Batcher,
        bindings: Sequence[SourceBinding],
        sink: TelemetrySink,
        clock: Clock | None = None,
    ) -> None:
        self.batcher = batcher
        self.bindings = list(bindings)
        self.sink = sink
        self.clock: Clock = clock or SystemClock()
        self.stats = AgentStats()
        self._clock_watch = ClockWatch()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: int | None = None

    async def run(self, stop: asyncio.Event) -> AgentStats:
        tasks = [
            asyncio.create_task(self._poll(binding), name=f"poll:{binding.source_id}")
            for binding in self.bindings
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results, strict=True):
                if isinstance(result, Exception):
                    log.error("%s failed: %r", task.get_name(), result)
            self._disarm_timer()
            final = self.batcher.flush()
            if final is not None:
                self._publish(final)
        return self.stats

    async def _poll(self, binding: SourceBinding) -> None:
        schedule = PollSchedule(binding.periods_ms, self.clock.mono_ms())
        while True:
            delay_ms = schedule.next_due_ms() - self.clock.mono_ms()
            if delay_ms > 0:
                await asyncio.sleep(delay_ms / 1000)
            due = schedule.take_due(self.clock.mono_ms())
            if due:
                self._ingest(await self._read(binding, due))

    async def _read(self, binding: SourceBinding, due: frozenset[str]) -> list[Reading]:
        now = self.clock.wall_ms()
        try:
            readings = await binding.source.read(now)
        except Exception:
            # Sources report comm failures as readings; an exception is a bug. Keep the other
            # sources running and make the gap visible as data.
            log.exception("source %s raised; reporting COMM_FAILURE", binding.source_id)
            self.stats.source_errors += 1
            readings = failed_readings(sorted(due), now, Quality.COMM_FAILURE)
        return [r for r in readings if r.signal in due]

    def _ingest(self, readings: list[Reading]) -> None:
        mono = self.clock.mono_ms()
        step = self._clock_watch.observe(self.clock.wall_ms(), mono)
        if step:
            self.stats.clock_steps += 1
            self.batcher.note_clock_step(step)
            log.warning("wall clock stepped by %+d ms", step)
        self.stats.readings += len(readings)
        for batch in self.batcher.add(readings, mono):
            self._publish(batch)
        self._arm_timer()

    def _publish(self, batch: TelemetryBatch) -> None:
        try:
            self.sink.publish_batch(batch)
        except PublishError as exc:
            kind = "queue full" if isinstance(exc, QueueFullError) else "refused"
            self.stats.batches_dropped += 1
            self.stats.readings_dropped += len(batch.readings)
            for r in batch.readings:
                self.stats.dropped_by_signal[r.signal] = (
                    self.stats.dropped_by_signal.get(r.signal, 0) + 1
                )
            log.error(
                "dropped batch seq %d (%d readings), %s: %s (no spool yet)",
                batch.seq,
                len(batch.readings),
                kind,
                exc,
            )
        else:
            self.stats.batches_published += 1

    # A loop timer flushes the pending batch when it becomes due by age.

    def _arm_timer(self) -> None:
        due = self.batcher.due_ms()
        if due == self._timer_due:
            return
        self._disarm_timer()
        if due is None:
            return
        delay_s = max(0, due - self.clock.mono_ms()) / 1000
        self._timer = asyncio.get_running_loop().call_later(delay_s, self._on_timer)
        self._timer_due = due

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_due = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_due = None
        batch = self.batcher.poll(self.clock.mono_ms())
        if batch is not None:
            self._publish(batch)
        self._arm_timer()


async def run_agent(
    config: AgentConfig,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> AgentStats:
    """Wire the agent from ``config`` and run it until SIGTERM/SIGINT (or ``stop``)."""
    clock = SystemClock()
    started_ms = clock.wall_ms()
    boot = new_boot_id(started_ms)
    publisher = MqttPublisher(
        config.broker,
        topics=config.topics,
        site=config.site,
        gateway=config.gateway,
        client_id=config.client_id,
        boot=boot,
        birth=build_birth(config, boot, started_ms),
        wall_ms=clock.wall_ms,
    )
    bindings = build_bindings(config)
    batcher = Batcher(
        gateway=config.gateway,
        boot=boot,
        max_readings=config.batching.max_readings,
        max_age_ms=round(config.batching.max_age_s * 1000),
    )
    agent = Agent(batcher=batcher, bindings=bindings, sink=publisher, clock=clock)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "edge agent %s: site %s gateway %s boot %s, %d source(s), %d signal(s)",
        agent_version(),
        config.site,
        config.gateway,
        boot,
        len(bindings),
        len(config.signals),
    )
    publisher.start()
    try:
        stats = await agent.run(stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        await asyncio.to_thread(publisher.stop, STOP_TIMEOUT_S)
        for binding in bindings:
            try:
                await binding.source.close()
            except Exception:
                log.exception("closing source %s failed", binding.source_id)
    log.info(
        "edge agent stopped: %d readings, %d batches published, %d dropped",
        stats.readings,
        stats.batches_published,
        stats.batches_dropped,
    )
    return stats
