"""A subscription of the live loop's own, for a fleet ingested by several workers.

Workers of one share group each receive a part of every gateway's messages, so no worker's
ingest sees whole series. The process that runs the live loop (``[live] source =
"subscription"``) therefore subscribes again, outside the share group, to telemetry, births
and states, and keeps its own health state from them. This subscription only reads: storing,
acknowledging and dead-lettering stay with ingest. A message it cannot decode is counted and
left to ingest, which dead-letters it. Its session is persistent (QoS 1, clean start off), so a
restart of the live process resumes where it left off, within the broker's session expiry.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud_service.ingest.health import HealthCore, HealthEvent
from cloud_service.ingest.mqtt_client import connect_properties, make_client
from cloud_service.ingest.pipeline import check_birth_address
from cloud_service.live.analytics import LiveAnalytics
from cloud_service.live.monitor import wall_ms
from cloud_service.settings import CloudSettings
from shared.codec import MessageDecoder, TelemetryDecoder
from shared.errors import ContractError
from shared.messages import Birth, State
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)


class LiveFeed:
    def __init__(
        self, settings: CloudSettings, live: LiveAnalytics, health: HealthCore, client_id: str
    ) -> None:
        self.settings = settings
        self.live = live
        self.health = health
        self.scheme = TopicScheme(settings.mqtt.topic_prefix)
        limits = settings.ingest.limits()
        self._telemetry = TelemetryDecoder(limits)
        self._birth = MessageDecoder(Birth, limits)
        self._state = MessageDecoder(State, limits)
        self.client = make_client(settings.mqtt, client_id=client_id, manual_ack=False)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self._inbox: collections.deque[tuple[str, bytes, int]] = collections.deque()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.connected = asyncio.Event()
        self.on_health_event: Any = None  # Callable[[HealthEvent], None]
        self.messages = 0
        self.undecodable = 0
        self._stopping = False

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("live feed: MQTT connect refused: %s", reason)
            return
        s = self.scheme
        client.subscribe(
            [(s.subscription(c), SubscribeOptions(qos=1)) for c in
             (Channel.TELEMETRY, Channel.BIRTH, Channel.STATE)]
        )  # fmt: skip
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_connected, wall_ms())

    def _on_connected(self, at_ms: int) -> None:
        """Connected (the first time, or again after losing the broker): health resumes,
        silence counts from now, not from before the cloud's downtime (the broker delivers
        what it kept for this session from now on)."""
        if self.health.held:
            self.health.resume(at_ms)
        self.connected.set()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        """Lost the broker: the gateways' silence from now on is the cloud's, not theirs."""
        log.warning("live feed: MQTT disconnected: %s", reason)
        if self._loop is not None and not self._stopping:
            self._loop.call_soon_threadsafe(self.health.hold)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.append((msg.topic, bytes(msg.payload), wall_ms()))
        if len(self._inbox) == 1 and self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        m = self.settings.mqtt
        self.client.connect_async(
            m.host, m.port, m.keepalive_s, clean_start=False, properties=connect_properties(m)
        )
        self.client.loop_start()
        interval = self.settings.health.check_interval_s
        try:
            while not stop.is_set():
                self._drain()
                self._emit(self.health.tick(wall_ms()))
                self._wake.clear()
                if self._inbox:
                    continue
                waits = [
                    asyncio.ensure_future(self._wake.wait()),
                    asyncio.ensure_future(stop.wait()),
                ]
                await asyncio.wait(waits, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
                for w in waits:
                    w.cancel()
        finally:
            self._stopping = True
            self.client.disconnect()
            self.client.loop_stop()

    def _drain(self) -> None:
        while self._inbox:
            topic, payload, received = self._inbox.popleft()
            self.messages += 1
            try:
                self._one(topic, payload, received)
            except ContractError:
                self.undecodable += 1  # ingest dead-letters it; nothing to add here

    def _one(self, topic: str, payload: bytes, received: int) -> None:
        address = self.scheme.parse(topic)
        if address.channel is Channel.TELEMETRY:
            batch = self._telemetry.decode(
                payload, now_ms=received, expect_gateway=address.gateway
            ).batch
            self.live.on_batch(address.site, address.gateway, batch, received)
            latest = {r.signal: r.ts for r in batch.readings}
            self._emit(
                self.health.seen(
                    address.site, address.gateway, latest, received, historical=batch.historical
                )
            )
        elif not payload:
            return
        elif address.channel is Channel.BIRTH:
            birth = self._birth.decode(payload)
            check_birth_address(birth, address)  # else one gateway could empty another's
            self.live.on_birth(address.site, birth)
            self.health.birth(address.site, birth, received)
        elif address.channel is Channel.STATE:
            state = self._state.decode(payload)
            self._emit(self.health.state(address.site, address.gateway, state.state, received))

    def _emit(self, events: list[HealthEvent]) -> None:
        if events and self.on_health_event is not None:
            for e in events:
                self.on_health_event(e)
