"""The agent's shell on the event loop: readings in, spool, publish, acks, alerts, health.

Everything runs on one asyncio thread (paho's events are handed over by the publisher), so
the pure cores need no locks. One pass of the data path:

1. a :class:`~edge_agent.polling.Poller` delivers a source's readings to :meth:`Agent.ingest`;
2. :class:`~edge_agent.processing.SignalProcessor` applies counters, report by exception and
   the timestamp guard; the :class:`~edge_agent.batcher.Batcher` closes batches;
3. closed batches *and the open ones* are written to the spool; one COMMIT per loop turn
   (:meth:`_flush`, ``synchronous=FULL``) makes them durable, and only then does the
   :class:`~edge_agent.delivery.Outbox` learn that a closed batch may be published;
4. :meth:`_pump` publishes what the outbox picks (live first, backlog under the rate limit);
5. the cloud's ``Ack`` deletes the covered batches; nothing else deletes them but the spool
   policy, which counts every reading it drops.

A spool that cannot be written (disk full, I/O error) does not stop the data path: readings
are held in memory (closed batches by the writer, open ones by the batcher, counters and
alerts here) and written again under a backoff until a COMMIT succeeds; past
``UNSAVED_MAX_BYTES`` new readings are refused and counted (``spool_error``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from edge_agent.alerts import AlertBook
from edge_agent.andon import AndonDriver
from edge_agent.backoff import Backoff
from edge_agent.batcher import Batcher
from edge_agent.config import AgentConfig, DropPolicy
from edge_agent.delivery import Outbox, TokenBucket
from edge_agent.errors import SpoolCorruptError, SpoolError
from edge_agent.health import build_status
from edge_agent.identity import SystemClock, build_birth
from edge_agent.polling import Clock, Poller, build_pollers
from edge_agent.processing import ClockWatch, SignalProcessor, rules_for
from edge_agent.publisher import MqttPublisher
from edge_agent.sending import Sender
from edge_agent.spool.files import quarantine
from edge_agent.spool.policy import DropReason, SpoolLimits
from edge_agent.spool.store import SpoolStore, batch_key
from edge_agent.spool.writer import BatchWriter, count_by_signal, encode_readings
from edge_agent.status import AckStatus, AgentStatus, RateMeter
from shared.messages import (
    Ack,
    Alert,
    AlertAck,
    Birth,
    Command,
    CommandName,
    Reading,
    TelemetryBatch,
)

log = logging.getLogger(__name__)

SPOOL_RETRY_MIN_S = 1.0  # first retry after the spool could not be written, doubling to
SPOOL_RETRY_MAX_S = 60.0
UNSAVED_MAX_BYTES = 8 * 1024 * 1024  # closed batches held in memory while it cannot (RSS)


class Agent:
    """One gateway's data path; see the module docstring. Build with :func:`runner.run_agent`."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: SpoolStore,
        boot: str,
        started_ms: int,
        clock: Clock | None = None,
        quarantined: Path | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self.boot = boot
        self.started_ms = started_ms
        self.store = store
        self.quarantined = [str(quarantined)] if quarantined else []
        self.publisher: MqttPublisher | None = None
        self.andon: AndonDriver | None = None  # set by the runner when [andon] is configured
        self.ordinal = store.begin_boot(boot, started_ms)
        self.batcher = Batcher(
            gateway=config.gateway,
            boot=boot,
            max_readings=config.batching.max_readings,
            max_age_ms=round(config.batching.max_age_s * 1000),
        )
        self.processor = SignalProcessor(rules_for(config), min_valid_ms=config.clock.min_valid_ms)
        self.processor.restore(
            store.load_counters(), store.get_meta("max_ts_ms"), now_ms=self.clock.wall_ms()
        )
        self.limits = SpoolLimits.from_config(config.spool)
        self.outbox = self._new_outbox()
        self._load_streams()
        self.alerts = AlertBook(store)
        self.pollers: dict[str, Poller] = {}
        self.clock_watch = ClockWatch(config.clock.step_threshold_ms)
        self.readings_in = RateMeter()
        self.readings_out = RateMeter()
        self.readings_total = 0
        self.clock_steps = 0
        self.last_clock_step_ms = 0
        self.corrupt_at_runtime = 0
        self.reloads = 0
        self.last_ack: AckStatus | None = None
        self.connection_since: int | None = None
        self.sender = Sender(self)
        self._to_commit: list[tuple[int, bool]] = []  # (seq, historical) closed, not committed
        self._unsaved_counters: dict[str, tuple[float, float]] = {}
        self.spool_errors = 0
        self.last_spool_error: str | None = None
        self._spool_down = False
        self._spool_backoff = Backoff(SPOOL_RETRY_MIN_S, SPOOL_RETRY_MAX_S)
        self._retry_timer: asyncio.TimerHandle | None = None
        self._alerts_lost = False
        self.writer = BatchWriter()
        self._flush_handle: asyncio.Handle | None = None
        self._age_timer: asyncio.TimerHandle | None = None
        self._age_due: int | None = None
        self._birth_dirty = False
        self._birth_sent_mono = -(10**12)
        self._saved_max_ts = store.get_meta("max_ts_ms")
        self.on_reload_request: Callable[[], None] | None = None  # set by the runner
        self.status_port: int | None = None  # set by the runner once the page listens

    def _new_outbox(self) -> Outbox:
        d = self.config.delivery
        return Outbox(
            current_boot=self.boot,
            window=d.window,
            bucket=TokenBucket(d.catchup_readings_per_s, d.catchup_burst_readings),
            live_queue_max=d.live_queue_max,
            resend_after_ms=round(d.resend_after_s * 1000),
            resend_max_ms=round(d.resend_max_s * 1000),
        )

    def _load_streams(self) -> None:
        for info in self.store.streams():
            if info.boot == self.boot:
                continue
            if info.batches == 0:
                self.store.forget_boot(info.boot)
                continue
            self.outbox.add_stream(info.boot, lo=info.lo, top=info.hi)
            log.info(
                "spool: %d batch(es), %d reading(s) of boot %s to replay as historical",
                info.batches,
                info.readings,
                info.boot,
            )
        self.store.commit()

    def birth(self) -> Birth:
        return build_birth(self.config, self.boot, self.started_ms, self.store.ledger.per_signal())

    def attach(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher

    # -- sources ------------------------------------------------------------------------

    def start_polling(self) -> None:
        """Start one poller per source that has signals."""
        for poller in build_pollers(self.config, clock=self.clock, sink=self.ingest):
            self.pollers[poller.id] = poller
            poller.start()

    async def stop_polling(self) -> None:
        # They stay listed: the final status still reports their health.
        await asyncio.gather(*(p.stop() for p in self.pollers.values()))

    def ingest(self, poller: Poller, readings: list[Reading]) -> None:
        """A source's readings (on the loop): process, batch, write; commit this loop turn."""
        mono = self.clock.mono_ms()
        self._observe_clock()
        processed = self.processor.process(readings, mono)
        self.readings_in.add(len(readings), mono)
        self.readings_total += len(readings)
        if not processed:
            return
        if self._spool_down and self.writer.unsaved_bytes >= UNSAVED_MAX_BYTES:
            # Nothing can be written and memory is the limit: refuse the newest, counted (the
            # ledger is written back to the file with the first transaction that commits).
            self.store.record_drops_later(count_by_signal(processed), DropReason.SPOOL_ERROR)
            self._birth_dirty = True
            return
        if self.limits.policy is DropPolicy.DROP_NEWEST:
            size = len(encode_readings(processed))
            if not self.limits.admits(self.store.totals.bytes, size):
                counts = count_by_signal(processed)
                self._guard(lambda: self.store.record_drops(counts, DropReason.SPOOL_FULL))
                self._birth_dirty = True
                self._schedule_flush()
                return
        closed = self.batcher.add(processed, mono, historical=poller.historical)
        self._guard(lambda: self._write(closed))
        self._arm_age_timer()

    def _observe_clock(self) -> None:
        step = self.clock_watch.observe(self.clock.wall_ms(), self.clock.mono_ms())
        if not step:
            return
        self.clock_steps += 1
        self.last_clock_step_ms = step
        self.batcher.note_clock_step(step)
        self.writer.shift_created(step)
        log.warning("wall clock stepped by %+d ms", step)
        # Spooled batches keep their age: a bogus step forward must not expire them all.
        self._guard(lambda: self.store.shift_created(step))
        self._schedule_flush()

    def _write(self, closed: list[TelemetryBatch]) -> None:
        for batch in self.writer.hold(closed, self.clock.wall_ms()):
            self._to_commit.append((batch.seq, batch.historical))
        self._unsaved_counters.update(self.processor.take_dirty_counters())
        if not self._spool_down:
            self._put_batches()
        self._schedule_flush()

    def _put_batches(self) -> None:
        if self._alerts_lost:
            self.alerts.persist_all()
            self._alerts_lost = False
        opened = self.writer.write(
            self.store, self.ordinal, self.batcher.open_batches(), self.clock.wall_ms()
        )
        for seq in opened:
            self.outbox.opened(seq)

    # -- durability ---------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if self._spool_down:
            return  # the retry timer flushes
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Enforce the bounds, COMMIT (fsync), then release the closed batches to the outbox."""
        self._flush_handle = None
        if self._spool_down:  # a retry: write again everything the lost transactions held
            if self._retry_timer is not None:
                self._retry_timer.cancel()
                self._retry_timer = None
            self._spool_down = False
            self._guard(self._put_batches)
        if not self._spool_down:
            self._guard(self._commit)
        self.sender.pump()

    def _commit(self) -> None:
        max_ts = self.processor.max_ts_ms
        if max_ts != self._saved_max_ts:  # down too: a clock jump back was accepted
            self.store.set_meta("max_ts_ms", max_ts)
        if self._unsaved_counters:
            self.store.save_counters(self._unsaved_counters)
        excess = self.limits.excess_bytes(self.store.totals.bytes)
        if excess:
            self._dropped(self.store.drop_oldest(excess, self._open_keys()))
        recovered = self.store.failed_since_commit
        self.store.commit()
        self._saved_max_ts = max_ts
        self._unsaved_counters.clear()
        self.writer.saved()
        self.alerts.saved()
        if recovered or self._spool_backoff.failures:
            log.warning("spool writable again after %d error(s)", self.spool_errors)
            self._spool_backoff.succeeded()
        for seq, historical in self._to_commit:
            self.outbox.committed(seq, historical=historical)
        self._to_commit.clear()
        self._maybe_send_birth()

    def _open_keys(self) -> set[int]:
        """Keys the spool policy must stop at: open batches, and batches on their way."""
        keys = {batch_key(self.ordinal, ob.seq) for ob in self.batcher.open_batches()}
        for boot, seq in self.outbox.in_flight_floor(self.clock.mono_ms()).items():
            ordinal = self.store.ordinal_of(boot)
            if ordinal is not None:
                keys.add(batch_key(ordinal, seq))
        return keys

    def _dropped(self, upto: dict[int, int]) -> None:
        boots = {info.ordinal: info.boot for info in self.store.streams()}
        for ordinal, seq in upto.items():
            boot = boots.get(ordinal)
            if boot is not None:
                self.outbox.dropped(boot, seq)
        self._birth_dirty = True
        self._retire()

    def expire(self) -> None:
        """Drop what is older than ``spool.max_age_s`` (called periodically)."""

        self._observe_clock()

        def run() -> None:
            cutoff = self.limits.expiry_cutoff_ms(self.clock.wall_ms())
            upto = self.store.expire(cutoff, self._open_keys())
            if upto:
                self._dropped(upto)
                self._schedule_flush()

        self._guard(run)

    def _retire(self) -> None:
        for boot in self.outbox.retire_empty():
            self.store.forget_boot(boot)

    def _guard(self, action: Callable[[], object]) -> None:
        """Run a spool action; a spool SQLite calls corrupt is moved aside and replaced, any
        other spool failure is retried (see the module docstring)."""
        try:
            action()
        except SpoolCorruptError as exc:
            self._recover_from_corruption(exc)
        except SpoolError as exc:
            self._spool_failed(exc)

    def _spool_failed(self, exc: SpoolError) -> None:
        self.spool_errors += 1
        self.last_spool_error = exc.reason
        self.writer.lost()
        self._alerts_lost = True
        if not self._spool_down:
            log.error("spool cannot be written (%s): holding readings in memory, retrying", exc)
        self._spool_down = True
        if self._retry_timer is None:
            now = self.clock.mono_ms() / 1000
            delay_s = max(0.0, self._spool_backoff.failed(now) - now)
            self._retry_timer = asyncio.get_running_loop().call_later(delay_s, self._retry)
        self._birth_dirty = True

    def _retry(self) -> None:
        self._retry_timer = None
        self._flush()

    def _recover_from_corruption(self, exc: SpoolCorruptError) -> None:
        kept = sum(len(ob.readings) for ob in self.batcher.open_batches())  # rewritten below
        kept += self.writer.unsaved_readings()
        lost = max(0, self.store.totals.readings - kept)
        log.error("spool corrupt at run time (%s): moving it aside, starting a fresh one", exc)
        self.store.close()
        moved = quarantine(self.store.path, self.clock.wall_ms())
        self.quarantined.append(str(moved))
        self.corrupt_at_runtime += 1
        ledger = self.store.ledger
        self.store = SpoolStore(self.store.path, check_on_start=False)
        self.store.carry_ledger(ledger)  # the counts go on (some may be in memory only)
        self.store.ledger.add_unattributed(DropReason.SPOOL_CORRUPT, lost)
        self.ordinal = self.store.begin_boot(self.boot, self.started_ms)
        connected = self.outbox.connected
        self.outbox = self._new_outbox()
        held = [ob.seq for ob in self.batcher.open_batches()] + self.writer.unsaved_seqs()
        first = min(held, default=self.batcher.next_seq)
        stream = self.outbox.stream(self.boot)
        assert stream is not None
        stream.lo, stream.acked = first, first - 1
        self.alerts = self.alerts.moved_to(self.store)  # active alerts, operators' acks kept
        self._alerts_lost = False
        self.writer.lost()  # closed batches not yet committed go into the new file
        self._spool_down = False
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None
        self._spool_backoff.succeeded()
        self.sender.forget_telemetry()
        if connected:
            self.outbox.on_connect()
        self._write([])
        self._birth_dirty = True

    # -- publishing ---------------------------------------------------------------------

    def request_birth(self) -> None:
        """Publish a fresh birth now (a reload changed the catalog or config hash)."""
        self._birth_dirty = True
        self._maybe_send_birth(force=True)

    def _maybe_send_birth(self, *, force: bool = False) -> None:
        now = self.clock.mono_ms()
        gap = self.config.delivery.birth_min_interval_s * 1000
        if self.publisher is None or not (force or self._birth_dirty):
            return
        if not force and now - self._birth_sent_mono < gap:
            return
        self._birth_dirty = False
        self._birth_sent_mono = now
        self.publisher.set_birth(self.birth(), publish_now=True)

    # -- publisher events (on the loop) -------------------------------------------------

    def on_connected(self) -> None:
        self.connection_since = self.clock.wall_ms()
        self.outbox.on_connect()
        self.sender.on_connected()
        self.sender.pump()

    def on_disconnected(self, reason: str) -> None:
        self.connection_since = self.clock.wall_ms()
        self.outbox.on_disconnect()

    def on_puback(self, mid: int, failure: str | None) -> None:
        confirmed = self.sender.on_puback(mid, failure)
        if confirmed is not None:
            self._guard(lambda: self.alerts.ack_delivered(confirmed.row))
            self._schedule_flush()
        self.sender.pump()

    def on_ack(self, ack: Ack, retained: bool) -> None:
        now = self.clock.mono_ms()
        self.last_ack = AckStatus(boot=ack.boot, seq=ack.seq, received_ms=self.clock.wall_ms())
        upto = self.outbox.on_ack(ack.boot, ack.seq, fresh=not retained, now_ms=now)
        ordinal = self.store.ordinal_of(ack.boot)
        if upto is not None and ordinal is not None:

            def delete() -> None:
                self.store.delete_upto(ordinal, upto)
                self._retire()

            self._guard(delete)
            self._schedule_flush()
        self.sender.pump()

    def on_alert(self, alert: Alert) -> None:
        self._guard(lambda: self.alerts.apply(alert))
        self._schedule_flush()

    def on_command(self, command: Command) -> None:
        log.info("command %s (%s)", command.name, command.id)
        if command.name is CommandName.RESEND_BIRTH:
            self._maybe_send_birth(force=True)
        elif command.name is CommandName.ALERT_ACK:
            alert_id = command.args.get("alert")
            if isinstance(alert_id, str):
                self._guard(lambda: self.alerts.mark_acked(alert_id))
                self._schedule_flush()
        elif command.name is CommandName.RELOAD_CONFIG and self.on_reload_request is not None:
            self.on_reload_request()

    @property
    def spool_down(self) -> bool:
        """Whether the spool could not be written and a retry is pending."""
        return self._spool_down

    def active_alerts(self) -> list[Alert]:
        """The book's active alerts (the book is replaced when a corrupt spool is)."""
        return self.alerts.active()

    def acknowledge(self, alert_id: str, operator: str, comment: str) -> AlertAck:
        """An operator acknowledged an alert here (status page or CLI)."""
        ack = self.alerts.take_ack(
            alert_id,
            gateway=self.config.gateway,
            operator=operator,
            comment=comment,
            now_ms=self.clock.wall_ms(),
        )
        self._guard(self.alerts.write_unsaved)  # held in the book if the spool fails
        self._schedule_flush()  # committed, then published by the pump
        return ack

    # -- timers and stopping ------------------------------------------------------------

    def _arm_age_timer(self) -> None:
        due = self.batcher.due_ms()
        if due == self._age_due:
            return
        if self._age_timer is not None:
            self._age_timer.cancel()
        self._age_timer, self._age_due = None, due
        if due is not None:
            delay_s = max(0, due - self.clock.mono_ms()) / 1000
            self._age_timer = asyncio.get_running_loop().call_later(delay_s, self._on_age)

    def _on_age(self) -> None:
        self._age_timer = self._age_due = None
        closed = self.batcher.poll(self.clock.mono_ms())
        if closed:
            self._guard(lambda: self._write(closed))
        self._arm_age_timer()

    def close_batches(self) -> None:
        """Close and commit every open batch (a graceful stop)."""
        closed = self.batcher.flush()
        if closed:
            self._guard(lambda: self._write(closed))
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        self._flush()
        if self._spool_down:
            log.error(
                "stopping with the spool unwritable: %d reading(s) held in memory are lost (%s)",
                self.writer.unsaved_readings(),
                self.last_spool_error,
            )

    def stop_timers(self) -> None:
        self.sender.cancel()
        for timer in (self._age_timer, self._flush_handle, self._retry_timer):
            if timer is not None:
                timer.cancel()

    # -- health -------------------------------------------------------------------------

    def snapshot(self) -> AgentStatus:
        return build_status(self)


async def run_agent(
    config: AgentConfig,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    config_path: str | Path | None = None,
) -> AgentStatus:
    """Run the agent (see :func:`edge_agent.runner.run_agent`); kept here for callers."""
    from edge_agent.runner import run_agent as run  # noqa: PLC0415 - runner imports this module

    return await run(config, stop=stop, handle_signals=handle_signals, config_path=config_path)
