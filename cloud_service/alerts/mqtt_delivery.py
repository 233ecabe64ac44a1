"""Alerts to the plant over MQTT, and acknowledgements from the plant back into the lifecycle.

Topic layout (a documented extension of the contract's ``alerts`` channel): each alert is
published, retained, on its own sub-topic ``{prefix}/{site}/{gateway}/alerts/{alert_id}``. A
broker retains one message per topic, so one topic per alert is what lets a reconnecting
gateway receive the whole active set (active, or cleared and still unacknowledged) at once.
When an occurrence closes (cleared and acknowledged) its final state (``closed: true``) is
published once, not retained, and then an empty retained payload deletes it from the broker.
Gateways subscribe to ``{prefix}/{site}/{gateway}/alerts/+`` and treat an empty payload as
"gone". A cloud-side acknowledgement reaches the plant as the alert's new retained state
(``acked``), shelving as ``shelved_until``.

A gateway that was away when an alert closed receives neither the final state (not
retained) nor the deletion (a deleted retained message is simply not delivered), so each
gateway also has a retained **index**, ``{prefix}/{site}/{gateway}/alert-index``
(``AlertIndex``): the ids of its open alerts and a revision. Every alert state published is
numbered with a per-gateway revision ``rev`` that only grows (``max(last + 1, now_ms)``), and
after each one the gateway's index is published again; a gateway drops what it holds that the
index does not list, unless what it holds is newer than the index (see ``AlertIndex``).

The index is a function of what is retained on the broker, kept in :class:`IndexBook` (pure).
On every (re)connect the link rebuilds the book from the broker: it subscribes to the
retained ``alerts/+``, ``alert-index`` and ``state`` topics of every gateway, then publishes a
marker to its own ``alert-sync`` topic; the broker delivers the retained messages of a
subscription before a message published after it, so when the marker comes back the book is
complete (no timing guess). Until then alert notifications wait (:meth:`MqttAlertLink.wait_synced`).
Then every gateway whose retained index differs from the book gets a fresh one, including
gateways seen only by their ``state`` (so a gateway that held alerts from before indexes
existed learns that they are gone).

Acknowledgements arrive on ``{prefix}/+/+/alert-acks`` (QoS 1, persistent session, so acks
sent while the cloud was down are queued by the broker) and are PUBACKed only after the
lifecycle change is stored; a malformed or foreign ack is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
import paho.mqtt.client as mqtt

from cloud_service.alerts.errors import AlertError, DeliveryError
from cloud_service.alerts.outbox import Notification
from cloud_service.alerts.settings import MqttAlertSettings
from cloud_service.ingest.mqtt_client import connect_properties, make_client
from cloud_service.settings import MqttSettings
from shared.codec import MessageDecoder, encode
from shared.errors import ContractError, Reason
from shared.messages import Alert, AlertAck, AlertIndex
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)

AckHandler = Callable[[AlertAck, str, str], Awaitable[object]]  # (ack, site, gateway)
CLOSED_KIND: Final = "alert.closed"
_PUBLISH_TIMEOUT_S: Final = 10.0
#: How long a notification waits for the book to be rebuilt after a connect before it is
#: retried by the outbox.
_SYNC_TIMEOUT_S: Final = 10.0

GatewayKey = tuple[str, str]  # (site, gateway)


def alert_topic(scheme: TopicScheme, site: str, gateway: str, alert_id: str) -> str:
    return scheme.alert_topic(site, gateway, alert_id)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class _GatewayBook:
    alerts: dict[str, int] = field(default_factory=dict)  # open alert id -> rev retained
    rev: int = 0  # highest revision given out (or seen) for this gateway
    retained: AlertIndex | None = None  # the index the broker holds, as far as we know


class IndexBook:
    """Per gateway: which alert states are retained on the broker, their revisions, and the
    index to publish (pure; the link feeds it what the broker holds and what it publishes)."""

    def __init__(self) -> None:
        self._gateways: dict[GatewayKey, _GatewayBook] = {}

    def _book(self, key: GatewayKey) -> _GatewayBook:
        book = self._gateways.get(key)
        if book is None:
            book = self._gateways[key] = _GatewayBook()
        return book

    # what the broker holds (the retained messages replayed at subscribe) ------------------
    def load_alert(self, key: GatewayKey, alert_id: str, rev: int) -> None:
        book = self._book(key)
        book.alerts[alert_id] = rev
        book.rev = max(book.rev, rev)

    def load_index(self, key: GatewayKey, index: AlertIndex) -> None:
        book = self._book(key)
        book.retained = index
        book.rev = max(book.rev, index.rev)

    def seen_gateway(self, key: GatewayKey) -> bool:
        """A gateway exists (its ``state``); True when it was not known before."""
        if key in self._gateways:
            return False
        self._gateways[key] = _GatewayBook()
        return True

    # what the link publishes ---------------------------------------------------------------
    def next_rev(self, key: GatewayKey, now_ms: int) -> int:
        """A new revision for a state of ``key``'s alerts: above every earlier one, and at least
        ``now_ms`` (so it keeps growing even if the broker lost what was retained)."""
        book = self._book(key)
        book.rev = max(book.rev + 1, now_ms)
        return book.rev

    def retained_state(self, key: GatewayKey, alert_id: str, rev: int) -> None:
        self._book(key).alerts[alert_id] = rev

    def deleted(self, key: GatewayKey, alert_id: str) -> None:
        self._book(key).alerts.pop(alert_id, None)

    def index(self, key: GatewayKey, now_ms: int) -> AlertIndex:
        book = self._book(key)
        return AlertIndex(gateway=key[1], rev=book.rev, ts=now_ms, alerts=dict(book.alerts))

    def published_index(self, key: GatewayKey, index: AlertIndex) -> None:
        self._book(key).retained = index

    def stale(self) -> list[GatewayKey]:
        """Gateways whose retained index (if any) is not what the book says."""
        return sorted(
            key
            for key, book in self._gateways.items()
            if book.retained is None
            or book.retained.alerts != book.alerts
            or book.retained.rev < book.rev
        )

    def open_alerts(self, key: GatewayKey) -> dict[str, int]:
        return dict(self._book(key).alerts)

    def retained_index(self, key: GatewayKey) -> AlertIndex | None:
        book = self._gateways.get(key)
        return None if book is None else book.retained


class MqttAlertLink:
    """One paho client for the alert channels (its own client id and session)."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: MqttAlertSettings,
        on_ack: AckHandler,
        *,
        retry_s: float = 1.0,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.mqtt_settings = mqtt_settings
        self.scheme = TopicScheme(mqtt_settings.topic_prefix)
        self.on_ack = on_ack
        self.retry_s = retry_s
        self.clock = clock
        self._decoder = MessageDecoder(AlertAck)
        self._alert_decoder = MessageDecoder(Alert)
        self._index_decoder = MessageDecoder(AlertIndex)
        client_id = settings.client_id or f"{mqtt_settings.client_id}-alerts"
        self.sync_topic = f"{self.scheme.prefix}/alert-sync/{client_id}"
        self.book = IndexBook()
        self._sync_token = ""
        self._synced = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.indexes_published = 0
        self.client = make_client(mqtt_settings, client_id=client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._connected = asyncio.Event()
        self.acks_applied = 0
        self.acks_dropped = 0

    # paho's network thread -----------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            log.error("alerts MQTT connect refused: %s", reason)
            return
        # Rebuild the index book: the retained alert states, indexes and gateway states, then
        # a marker that comes back after all of them (see the module docstring).
        token = secrets.token_hex(8)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._begin_sync, token)
        s = self.scheme
        client.subscribe(
            [
                (s.subscription(Channel.ALERT_ACKS), 1),
                (s.subscription(Channel.ALERTS) + "/+", 1),
                (s.subscription(Channel.ALERT_INDEX), 1),
                (s.subscription(Channel.STATE), 1),
                (self.sync_topic, 1),
            ]
        )
        client.publish(self.sync_topic, token.encode(), qos=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("alerts MQTT disconnected: %s", reason)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.clear)
            self._loop.call_soon_threadsafe(self._synced.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._loop is None:
            return
        if msg.topic != self.sync_topic and msg.topic.endswith("/" + Channel.ALERT_ACKS.value):
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, msg)
        else:  # the book's messages are handled in their order, between connects
            self._loop.call_soon_threadsafe(self._on_book_message, msg)

    # the index book (on the event loop) ------------------------------------------------------
    def _begin_sync(self, token: str) -> None:
        self._sync_token = token
        self._synced.clear()
        self.book = IndexBook()

    def _on_book_message(self, msg: mqtt.MQTTMessage) -> None:
        self.client.ack(msg.mid, msg.qos)
        payload = bytes(msg.payload)
        if msg.topic == self.sync_topic:
            if payload.decode(errors="replace") == self._sync_token and not self._synced.is_set():
                self._synced.set()
                self._spawn(self._publish_stale())
            return
        try:
            address = self.scheme.parse(msg.topic)
            key = (address.site, address.gateway)
            if address.channel == Channel.STATE:
                if self.book.seen_gateway(key) and self._synced.is_set():
                    self._spawn(self._publish_stale())
            elif self._synced.is_set() or not msg.retain:
                return  # our own publications echoed: the book already knows them
            elif address.channel == Channel.ALERTS and address.alert_id is not None:
                alert = self._alert_decoder.decode(payload)
                self.book.load_alert(key, address.alert_id, alert.rev)
            elif address.channel == Channel.ALERT_INDEX:
                self.book.load_index(key, self._index_decoder.decode(payload))
        except ContractError as exc:
            log.warning("alerts MQTT: ignoring retained %s: %s", msg.topic, exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_stale(self) -> None:
        """Publish the index of every gateway whose retained index is not the book's."""
        book = self.book
        for key in book.stale():
            try:
                await self.publish_index(key, book)
            except DeliveryError as exc:  # the next connect (or alert) publishes it again
                log.warning("alert index of %s/%s not published: %s", *key, exc)
                return

    async def wait_synced(self, timeout_s: float) -> None:
        """Wait until the index book is rebuilt after a connect (DeliveryError if not)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout_s)
        except TimeoutError:
            raise DeliveryError("alert index not rebuilt yet", channel="mqtt",
                                recipient=self.sync_topic, retryable=True) from None  # fmt: skip

    async def publish_index(self, key: GatewayKey, book: IndexBook) -> None:
        """Publish ``key``'s index from ``book``, unless a reconnect replaced the book meanwhile
        (it may be incomplete still, and it knows nothing of what was sent with the old one:
        DeliveryError, so the caller's notification is sent again)."""
        if book is not self.book or not self._synced.is_set():
            raise DeliveryError("reconnected meanwhile: alert index rebuilt", channel="mqtt",
                                recipient=f"{key[0]}/{key[1]}", retryable=True)  # fmt: skip
        index = book.index(key, self.clock())
        topic = self.scheme.topic(key[0], key[1], Channel.ALERT_INDEX)
        await self.publish(topic, encode(index), retain=True)
        book.published_index(key, index)
        self.indexes_published += 1

    async def publish_alert(self, key: GatewayKey, alert: Alert) -> None:
        """Publish one alert state for the plant (numbered), then the gateway's index."""
        await self.wait_synced(_SYNC_TIMEOUT_S)
        book = self.book
        rev = book.next_rev(key, self.clock())
        payload = encode(msgspec.structs.replace(alert, rev=rev))
        topic = alert_topic(self.scheme, key[0], key[1], alert.id)
        # The book changes before the publish call, in the same step, so any index built
        # later is published after this state (paho sends in call order).
        if alert.closed:
            book.deleted(key, alert.id)
            await self.publish(topic, payload, retain=False)
            await self.publish(topic, b"", retain=True)
        else:
            book.retained_state(key, alert.id, rev)
            await self.publish(topic, payload, retain=True)
        await self.publish_index(key, book)

    # asyncio side ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Connect (reconnecting forever) and apply plant acknowledgements until ``stop``."""
        self._loop = asyncio.get_running_loop()
        m = self.mqtt_settings
        self.client.connect_async(
            m.host, m.port, m.keepalive_s, clean_start=False, properties=connect_properties(m)
        )
        self.client.loop_start()
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                getter = asyncio.ensure_future(self._inbox.get())
                await asyncio.wait([getter, stopper], return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await self._handle(getter.result(), stop)
        finally:
            stopper.cancel()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.client.disconnect()
            self.client.loop_stop()
            self._connected.clear()
            self._synced.clear()

    async def wait_connected(self, timeout_s: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout_s)

    async def _handle(self, msg: mqtt.MQTTMessage, stop: asyncio.Event) -> None:
        try:
            address = self.scheme.parse(msg.topic)
            if address.channel != Channel.ALERT_ACKS:
                raise ContractError(Reason.BAD_TOPIC, f"not an alert-acks topic: {msg.topic}")
            ack = self._decoder.decode(bytes(msg.payload))
            if ack.gateway != address.gateway:
                raise ContractError(Reason.TOPIC_MISMATCH, f"ack names gateway {ack.gateway}")
        except ContractError as exc:
            self._drop(msg, f"invalid alert ack on {msg.topic}: {exc}")
            return
        delay = self.retry_s
        while True:
            try:
                await self.on_ack(ack, address.site, address.gateway)
            except AlertError as exc:  # unknown or foreign alert: nothing to retry
                self._drop(msg, f"alert ack from {address.site}/{address.gateway} refused: {exc}")
                return
            except Exception:
                log.exception("storing alert ack failed; retrying in %.1f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    return  # not PUBACKed: the broker redelivers it to our next session
                delay = min(delay * 2, 30.0)
                continue
            self.acks_applied += 1
            self.client.ack(msg.mid, msg.qos)
            return

    def _drop(self, msg: mqtt.MQTTMessage, why: str) -> None:
        log.warning("%s", why)
        self.acks_dropped += 1
        self.client.ack(msg.mid, msg.qos)

    async def publish(self, topic: str, payload: bytes, *, retain: bool) -> None:
        """Publish at QoS 1 and return once the broker has PUBACKed it."""
        if not self.client.is_connected():
            raise DeliveryError("MQTT not connected", channel="mqtt", recipient=topic,
                                retryable=True)  # fmt: skip
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            raise DeliveryError(f"MQTT publish refused: {mqtt.error_string(info.rc)}",
                                channel="mqtt", recipient=topic, retryable=True)  # fmt: skip
        try:
            await asyncio.to_thread(info.wait_for_publish, _PUBLISH_TIMEOUT_S)
        except (ValueError, RuntimeError) as exc:
            raise DeliveryError(str(exc), channel="mqtt", recipient=topic,
                                retryable=True) from exc  # fmt: skip
        if not info.is_published():
            raise DeliveryError("no PUBACK in time", channel="mqtt", recipient=topic,
                                retryable=True)  # fmt: skip


class MqttAlertSink:
    """The ``mqtt`` channel: recipient ``site/gateway``, payload an encoded ``Alert``."""

    channel = "mqtt"

    def __init__(self, link: MqttAlertLink) -> None:
        self.link = link
        self._decoder = MessageDecoder(Alert)

    async def send(self, n: Notification) -> None:
        site, _, gateway = n.recipient.partition("/")
        if n.alert_id is None or not gateway:
            raise DeliveryError("not an alert for a gateway", channel=self.channel,
                                recipient=n.recipient, retryable=False)  # fmt: skip
        try:
            alert = self._decoder.decode(n.payload)
        except ContractError as exc:
            raise DeliveryError(f"not an alert: {exc}", channel=self.channel,
                                recipient=n.recipient, retryable=False) from None  # fmt: skip
        if n.kind == CLOSED_KIND and not alert.closed:  # queued before ``closed`` existed
            alert = msgspec.structs.replace(alert, closed=True)
        await self.link.publish_alert((site, gateway), alert)
