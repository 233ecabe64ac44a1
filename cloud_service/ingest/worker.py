"""The ingest shell: paho (manual acks) -> IngestCore -> stores -> PUBACK + e2e ack.

A message is PUBACKed only after its readings are written to the store or dead-lettered, so a
crash at any point leaves it with the broker, which redelivers it (persistent session, clean
start off, a session expiry). While a store is down the writer retries and acks nothing; the
broker stops sending once ``receive_maximum`` messages are un-acked, so memory stays bounded
and nothing is dropped (see ``writer.py``).

Memory is bounded by our own high-water mark too, not only by the broker honouring
``receive_maximum`` (Mosquitto 2.0.11 was measured sending well past it to a client that
acks): when ``receive_maximum`` messages wait in the inbox, paho's thread stops reading the
socket until the collector drains half of them, so TCP pushes back on the broker, which keeps
the messages in the session.

Stages run concurrently: a collector decodes the next batch while up to ``writes_in_flight``
writes are on their way (one write in flight leaves influxd idle between requests). Writes
may finish in any order; PUBACKs and end-to-end acks go out strictly in arrival order.

A stop (SIGTERM) stops taking messages, lets the persists already in flight finish (at most
``ingest.shutdown_timeout_s``), acks them, and only then disconnects. Whatever was received
but not yet being written stays un-acked and the broker redelivers it; a persist still running
at the deadline is cancelled (also un-acked).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud_service.deadletter import DeadLetterStore
from cloud_service.ingest.health import HealthCore, HealthEvent
from cloud_service.ingest.mqtt_client import connect_properties, make_client
from cloud_service.ingest.peers import StoredReport, decode_report, encode_report, report_topic
from cloud_service.ingest.pipeline import Inbound, IngestCore, Outcome, Prepared
from cloud_service.ingest.stats import IngestStats
from cloud_service.ingest.writer import (
    ActivityWriter,
    Persister,
    RegistryWriter,
    WritableStore,
    now_ms,
)
from cloud_service.metrics import IngestMetrics
from cloud_service.settings import CloudSettings
from cloud_service.storage.retry import Backoff
from shared.codec import encode
from shared.messages import Ack
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)

_ABANDON_WAIT_S = 1.0  # for cancelled writes at a stop, before they are left behind

_DISCONNECT_WAIT_S = 2.0  # for paho to send the last acks and DISCONNECT at a stop

__all__ = ["IngestCrashed", "IngestStats", "IngestWorker", "WritableStore"]


class IngestCrashed(RuntimeError):
    """An ingest stage died of an unexpected error; un-acked messages stay with the broker."""


@dataclass(frozen=True, slots=True)
class _Token:
    generation: int  # connection count when received: a PUBACK is only valid on that connection
    mid: int
    qos: int


class IngestWorker:
    def __init__(
        self,
        settings: CloudSettings,
        store: WritableStore,
        dead_letters: DeadLetterStore,
        *,
        registry: RegistryWriter | None = None,
        metrics: IngestMetrics | None = None,
        backoff: Backoff | None = None,
        on_health_event: Callable[[HealthEvent], None] | None = None,
    ) -> None:
        self.settings = settings
        ingest = settings.ingest
        self.scheme = TopicScheme(settings.mqtt.topic_prefix)
        self.core = IngestCore(
            self.scheme,
            ingest.limits(),
            settle_max_bytes=settings.metadata.dead_letter_max_raw_bytes,
        )
        self.health = HealthCore(settings.health.stale_after_periods)
        self.metrics = metrics or IngestMetrics()
        backoff = backoff or Backoff(ingest.retry_base_s, ingest.retry_cap_s, 1_000_000)
        self.persister = Persister(store, dead_letters, registry, self.metrics, backoff)
        self.stats = IngestStats(self)
        self.on_health_event = on_health_event
        self._report_topic = report_topic(settings.mqtt.topic_prefix, settings.mqtt.share_group)
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # paho's thread appends; the loop is woken only when the deque turns non-empty.
        self._inbox: collections.deque[Inbound] = collections.deque()
        self._wakeup = asyncio.Event()
        self._high_water = settings.mqtt.receive_maximum
        # paho's thread resumes reading once fewer than this wait: half the high-water mark,
        # but at least 1 (an empty inbox), so every receive_maximum >= 1 can resume.
        self._low_water = max(1, self._high_water // 2)
        self._room = threading.Event()  # cleared while the inbox is over the high-water mark
        self._room.set()
        self._closing = False
        self._ready: asyncio.Queue[Prepared] = asyncio.Queue(maxsize=ingest.writes_in_flight)
        # Persists on their way, oldest first; owned by ``_write``, drained by ``_drain``.
        self._inflight: collections.deque[tuple[Prepared, asyncio.Task[None]]] = collections.deque()
        self._disconnected = threading.Event()  # set by paho once DISCONNECT has gone out
        self._connected = asyncio.Event()
        self.received = 0
        self.acked = 0
        self.client = make_client(settings.mqtt, client_id=settings.mqtt.client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # -- paho callbacks (paho's network thread) --------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.stats.last_error = f"MQTT connect refused: {reason}"
            log.error("MQTT connect refused: %s", reason)
            return
        self._generation += 1
        self._disconnected.clear()
        s = self.scheme
        subscriptions = [
            (s.shared_subscription(self.settings.mqtt.share_group, Channel.TELEMETRY), _qos(1)),
            # Retained births/states are never sent to shared subscriptions: every worker
            # subscribes directly (each needs the catalog anyway).
            (s.subscription(Channel.BIRTH), _qos(1)),
            (s.subscription(Channel.STATE), _qos(1)),
        ]
        if self.settings.ingest.peer_reports:
            subscriptions.append((self._report_topic, SubscribeOptions(qos=0, noLocal=True)))
        client.subscribe(subscriptions)
        self.metrics.connected.set(1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._link_up, now_ms())

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.metrics.connected.set(0)
        self._disconnected.set()
        if self._closing:
            log.info("MQTT disconnected: %s", reason)
        else:
            log.warning("MQTT disconnected: %s", reason)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self.health.hold)

    def _link_up(self, at_ms: int) -> None:
        """Connected (again): silence counts from now. While the cloud could not hear the
        broker, gateways' silence was its own, not theirs (health held since the drop)."""
        if self.health.held:
            self.health.resume(at_ms)
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        assert self._loop is not None
        if msg.topic == self._report_topic:
            report = decode_report(msg.payload)
            if report is not None:
                self._loop.call_soon_threadsafe(self._merge, report)
            return
        inbound = Inbound(
            msg.topic, bytes(msg.payload), now_ms(), _Token(self._generation, msg.mid, msg.qos)
        )
        self._inbox.append(inbound)
        if len(self._inbox) == 1:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        if len(self._inbox) >= self._high_water:
            self._room.clear()
            # Not reading the socket is the back-pressure; wake up now and then to notice a
            # shutdown (keepalive pings wait meanwhile: a long stall ends in a reconnect,
            # and the broker redelivers whatever was not acked).
            while len(self._inbox) >= self._low_water and not self._closing:
                self._room.wait(0.5)

    # -- asyncio side --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        m = self.settings.mqtt
        self.client.connect_async(
            m.host, m.port, m.keepalive_s, clean_start=False, properties=connect_properties(m)
        )
        self.client.loop_start()
        stages = [self._collect(), self._write(), self._watch()]
        tasks = [asyncio.create_task(stage) for stage in stages]
        stopper = asyncio.create_task(stop.wait())
        graceful = False
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    # A bug, not bad input (that is dead-lettered): fail loudly, ack nothing more.
                    raise IngestCrashed(str(task.exception())) from task.exception()
            graceful = True
        finally:
            # Stop taking messages first: paho's thread stops handing them over, the collector
            # and the writer stop; what they held is not acked and the broker redelivers it.
            self._closing = True
            self._room.set()
            stopper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Writes already on their way finish and are acked (a stop); after a crash or a
            # cancel of ``run`` itself they are cancelled and nothing more is acked.
            await self._drain(self.settings.ingest.shutdown_timeout_s if graceful else None)
            if self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
                # The acks queued above leave before DISCONNECT; wait until it is out.
                await asyncio.to_thread(self._disconnected.wait, _DISCONNECT_WAIT_S)
            self.client.loop_stop()
            self.metrics.connected.set(0)

    async def _drain(self, timeout_s: float | None) -> None:
        """Let the persists in flight finish within ``timeout_s`` and ack them in order;
        ``None``: cancel them all and ack nothing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_s or 0.0)
        try:
            while self._inflight and timeout_s is not None:
                prepared, task = self._inflight[0]
                if not task.done():
                    await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
                if not task.done():
                    log.warning(
                        "stop: %d write(s) still in flight after %.1f s, cancelled and left "
                        "un-acked (the broker redelivers them)",
                        len(self._inflight),
                        timeout_s,
                    )
                    break
                self._inflight.popleft()
                if task.cancelled() or task.exception() is not None:
                    if not task.cancelled():
                        log.error("stop: a write in flight failed", exc_info=task.exception())
                    break  # not stored: neither it nor anything after it is acked
                self._acknowledge(prepared)
        finally:
            pending = [task for _, task in self._inflight]
            self._inflight.clear()
            for task in pending:
                task.cancel()
            if pending:
                # a write blocked in a database call ends only when the call returns (a SQLite
                # lock waits up to 30 s): wait briefly, then leave it, un-acked
                await asyncio.wait(pending, timeout=_ABANDON_WAIT_S)

    async def wait_connected(self, within_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within_s)

    async def _next(self, wait_s: float | None) -> Inbound | None:
        while not self._inbox:
            self._wakeup.clear()
            if self._inbox:
                break
            if wait_s is None:
                await self._wakeup.wait()
            else:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), wait_s)
                except TimeoutError:
                    return None
        return self._take()

    def _take(self) -> Inbound:
        m = self._inbox.popleft()
        if not self._room.is_set() and len(self._inbox) < self._low_water:
            self._room.set()
        return m

    async def _collect(self) -> None:
        max_points = self.settings.ingest.max_points
        max_age = self.settings.ingest.max_age_s
        loop = asyncio.get_running_loop()
        while True:
            first = await self._next(None)
            assert first is not None
            prepared = Prepared()
            self.core.add(first, prepared)
            deadline = loop.time() + max_age
            while len(prepared.lines) < max_points:
                if self._inbox:
                    self.core.add(self._take(), prepared)
                    continue
                m = await self._next(deadline - loop.time())
                if m is None:
                    break
                self.core.add(m, prepared)
            self.received += len(prepared.tokens)
            self.metrics.messages.inc(len(prepared.tokens))
            self.metrics.unacked.set(self.received - self.acked)
            await self._ready.put(prepared)

    async def _write(self) -> None:
        """Up to ``writes_in_flight`` persists at once; acks strictly in arrival order."""
        limit = self.settings.ingest.writes_in_flight
        inflight = self._inflight  # left to ``_drain`` when this stage is cancelled
        getter: asyncio.Task[Prepared] | None = None
        try:
            while True:
                if getter is None and len(inflight) < limit:
                    getter = asyncio.create_task(self._ready.get())
                waiting: set[asyncio.Future[Any]] = {inflight[0][1]} if inflight else set()
                if getter is not None:
                    waiting.add(getter)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if getter is not None and getter.done():
                    prepared = getter.result()
                    getter = None
                    after = inflight[-1][1] if inflight else None  # registry order
                    task = asyncio.create_task(self.persister.persist(prepared, after))
                    inflight.append((prepared, task))
                while inflight and inflight[0][1].done():
                    prepared, task = inflight.popleft()
                    task.result()  # a crash propagates
                    self._acknowledge(prepared)
        finally:
            if getter is not None:
                getter.cancel()

    def _acknowledge(self, prepared: Prepared) -> None:
        for token in prepared.tokens:
            if isinstance(token, _Token) and token.qos > 0 and token.generation == self._generation:
                self.client.ack(token.mid, token.qos)
        self.acked += len(prepared.tokens)
        self.metrics.unacked.set(self.received - self.acked)
        now = now_ms()
        outcome = self.core.stored(prepared, now)
        self._count(outcome)
        self._publish_acks(outcome.acks)
        if outcome.report and self.settings.ingest.peer_reports:
            report = StoredReport(worker=self.settings.mqtt.client_id, streams=outcome.report)
            self.client.publish(self._report_topic, encode_report(report), qos=0)
        self._observe(prepared, now)

    def _count(self, outcome: Outcome) -> None:
        self.metrics.duplicates.inc(outcome.duplicates)
        self.metrics.gaps.inc(outcome.gaps)
        self.metrics.filled.inc(outcome.filled)

    def _merge(self, report: StoredReport) -> None:
        self._publish_acks(self.core.merge(report, now_ms()))

    def _publish_acks(self, acks: list[tuple[str, Ack]]) -> None:
        for site, ack in acks:
            topic = self.scheme.topic(site, ack.gateway, Channel.ACK)
            info = self.client.publish(topic, encode(ack), qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.metrics.acks.inc()
            else:  # the next ack supersedes it; a gateway keeps its spool meanwhile
                self.metrics.ack_failures.inc()

    # -- health ----------------------------------------------------------------------------
    def _observe(self, prepared: Prepared, now: int) -> None:
        events: list[HealthEvent] = []
        for b in prepared.births:
            self.health.birth(b.site, b.birth, now)
        for s in prepared.states:
            events += self.health.state(s.site, s.gateway, s.state.state, now)
        for batch in prepared.batches:
            if batch.refused:
                continue
            events += self.health.seen(
                batch.site,
                batch.gateway,
                batch.latest,
                batch.received_ms,
                historical=batch.historical,
            )
        self._emit(events)

    def _emit(self, events: list[HealthEvent]) -> None:
        for event in events:
            self.metrics.health_events.labels(event.kind.value).inc()
            log.info(
                "health: %s %s/%s %s",
                event.kind.value,
                event.site,
                event.gateway,
                event.signal or "",
            )
            if self.on_health_event is not None:
                self.on_health_event(event)

    async def _watch(self) -> None:
        """Periodic: health deadlines and gauges (the app saves activity, see ``flush``)."""
        interval = self.settings.health.check_interval_s
        loop = asyncio.get_running_loop()
        next_log = loop.time() + self.settings.ingest.status_log_s
        while True:
            await asyncio.sleep(interval)
            self._emit(self.health.tick(now_ms()))
            if loop.time() >= next_log:
                next_log = loop.time() + self.settings.ingest.status_log_s
                log.info("status: %s", self.stats)
            for status, n in self.health.counts().items():
                self.metrics.signals.labels(status.value).set(n)
            self.metrics.missing.set(self.core.tracker.missing())

    async def flush(self, registry: ActivityWriter, *, activity: bool = False) -> None:
        """Save health status changes, gateway last-seen and sequence state; with
        ``activity`` also every signal's last-seen time (a bigger, rarer save). What a failed
        save did not store stays pending for the next one (the error propagates)."""
        gateways, signals = self.health.take_dirty()
        if activity:
            signals += self.health.take_activity()
        streams = self.core.tracker.take_dirty(now_ms())
        try:
            await registry.save_activity(gateways, signals, streams)
        except BaseException:
            self.health.unsaved(signals)
            self.core.tracker.unsaved(streams)
            raise


def _qos(qos: int) -> SubscribeOptions:
    return SubscribeOptions(qos=qos)
