"""The ingest shell: paho (manual acks) -> IngestCore -> TimeSeriesStore -> PUBACK + e2e ack.

A message is PUBACKed only after its readings are written to the store or dead-lettered, so a
crash at any point leaves it with the broker, which redelivers it (persistent session, clean
start off, a session expiry). While the store is down the writer retries with backoff and
acks nothing; the broker stops sending once ``receive_maximum`` messages are un-acked, so
memory stays bounded and nothing is dropped.

Two stages run concurrently: a collector decodes the next batch while the writer writes the
current one, so neither the CPU nor influxd sits idle waiting for the other.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from cloud_service.deadletter import DeadLetter, DeadLetterSink
from cloud_service.ingest.mqtt_client import connect_properties, make_client
from cloud_service.ingest.pipeline import Inbound, IngestCore, Prepared
from cloud_service.settings import CloudSettings
from cloud_service.storage.errors import StorageError, WriteRejected
from cloud_service.storage.retry import Backoff
from shared.codec import encode
from shared.errors import Reason
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)


class IngestCrashed(RuntimeError):
    """An ingest stage died of an unexpected error; un-acked messages stay with the broker."""


class WritableStore(Protocol):
    """The part of ``TimeSeriesStore`` ingest needs."""

    async def write(self, lines: bytes | list[str], *, precision: str = "ms") -> None: ...

    async def write_isolating(self, lines: list[str]) -> Any: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class IngestStats:
    messages: int = 0
    batches_written: int = 0
    points_written: int = 0
    write_retries: int = 0
    store_up: bool = True
    connected: bool = False
    last_error: str = ""
    acks_published: int = 0
    ack_publish_failures: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)


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
        dead_letters: DeadLetterSink,
        *,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.scheme = TopicScheme(settings.mqtt.topic_prefix)
        self.core = IngestCore(self.scheme, settings.ingest.limits())
        self.store = store
        self.dead_letters = dead_letters
        self.backoff = backoff or Backoff(base_s=0.2, cap_s=10.0, max_retries=1_000_000)
        self.stats = IngestStats()
        self._rng = random.Random()  # noqa: S311 - backoff jitter, not cryptography
        self._generation = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[Inbound] = asyncio.Queue()
        self._ready: asyncio.Queue[Prepared] = asyncio.Queue(maxsize=2)
        self._connected = asyncio.Event()
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
        self.stats.connected = True
        s = self.scheme
        subscriptions = [
            (s.shared_subscription(self.settings.mqtt.share_group, Channel.TELEMETRY), 1),
            # Retained births/states are never sent to shared subscriptions: every worker
            # subscribes directly (each needs the catalog anyway).
            (s.subscription(Channel.BIRTH), 1),
            (s.subscription(Channel.STATE), 1),
        ]
        client.subscribe(subscriptions)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self.stats.connected = False
        log.warning("MQTT disconnected: %s", reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        inbound = Inbound(
            msg.topic, bytes(msg.payload), now_ms(), _Token(self._generation, msg.mid, msg.qos)
        )
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._inbox.put_nowait, inbound)

    # -- asyncio side --------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        m = self.settings.mqtt
        self.client.connect_async(
            m.host, m.port, m.keepalive_s, clean_start=False, properties=connect_properties(m)
        )
        self.client.loop_start()
        tasks = [asyncio.create_task(self._collect()), asyncio.create_task(self._write())]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not stopper and not task.cancelled() and task.exception():
                    # A bug, not bad input (that is dead-lettered): fail loudly, ack nothing more.
                    raise IngestCrashed(str(task.exception())) from task.exception()
        finally:
            stopper.cancel()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.client.disconnect()
            self.client.loop_stop()

    async def wait_connected(self, within_s: float = 10.0) -> None:
        await asyncio.wait_for(self._connected.wait(), within_s)

    async def _collect(self) -> None:
        max_points = self.settings.ingest.max_points
        max_age = self.settings.ingest.max_age_s
        loop = asyncio.get_running_loop()
        while True:
            first = await self._inbox.get()
            prepared = Prepared()
            self.core.add(first, prepared)
            deadline = loop.time() + max_age
            while len(prepared.lines) < max_points:
                if self._inbox.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        m = await asyncio.wait_for(self._inbox.get(), remaining)
                    except TimeoutError:
                        break
                else:
                    m = self._inbox.get_nowait()
                self.core.add(m, prepared)
            self.stats.messages += len(prepared.tokens)
            await self._ready.put(prepared)

    async def _write(self) -> None:
        while True:
            prepared = await self._ready.get()
            if prepared.lines:
                await self._store_lines(prepared)
            for letter in prepared.dead:
                self._dead_letter(letter)
            if prepared.dead:
                self.dead_letters.flush()
            self._acknowledge(prepared)

    async def _store_lines(self, prepared: Prepared) -> None:
        attempt = 0
        while True:
            try:
                await self.store.write(prepared.lines)
            except WriteRejected:
                outcome = await self.store.write_isolating(prepared.lines)
                for rejected in outcome.rejected:
                    prepared.dead.append(
                        DeadLetter(
                            Reason.STORE_REJECTED,
                            str(rejected.error),
                            "(store)",
                            None,
                            now_ms(),
                            rejected.line.encode(),
                            rejected.index,
                        )
                    )
                self.stats.points_written += outcome.written
            except StorageError as exc:
                # Unavailable, auth, anything else: keep the messages un-acked and retry.
                attempt += 1
                self.stats.write_retries += 1
                self.stats.store_up = False
                self.stats.last_error = f"store: {exc}"
                if attempt == 1:
                    log.warning("time-series store write failed, retrying: %s", exc)
                await asyncio.sleep(self.backoff.delay(min(attempt, 30), self._rng))
                continue
            else:
                self.stats.points_written += len(prepared.lines)
            if not self.stats.store_up:
                log.info("time-series store writes recovered after %d retries", attempt)
            self.stats.store_up = True
            self.stats.batches_written += 1
            return

    def _dead_letter(self, letter: DeadLetter) -> None:
        self.dead_letters.put(letter)
        self.stats.dead_letters[letter.reason.value] += 1
        log.info("dead letter %s on %s: %s", letter.reason.value, letter.topic, letter.detail)

    def _acknowledge(self, prepared: Prepared) -> None:
        for token in prepared.tokens:
            if isinstance(token, _Token) and token.qos > 0 and token.generation == self._generation:
                self.client.ack(token.mid, token.qos)
        for site, ack in self.core.stored(prepared, now_ms()):
            topic = self.scheme.topic(site, ack.gateway, Channel.ACK)
            info = self.client.publish(topic, encode(ack), qos=1, retain=True)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.stats.acks_published += 1
            else:  # the next ack supersedes it; a gateway keeps its spool meanwhile
                self.stats.ack_publish_failures += 1
