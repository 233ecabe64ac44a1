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

The index is a function of what is retained on the broker, kept in
:class:`~.plant_index.IndexBook` (pure). On every (re)connect the link rebuilds the book from
the broker: it subscribes to the retained ``alerts/+``, ``alert-index`` and ``state`` topics of
every gateway, then publishes a marker to its own ``alert-sync`` topic; the broker delivers the
retained messages of a subscription before a message published after it, so when the marker
comes back the book is complete (no timing guess). Then every open alert of the lifecycle
(``plant_alerts``) that the broker does not retain (it lost it: restarted inside its autosave
window, or wiped) is republished, before any index could omit it; every index is checked the
same way before it is published. Only then may notifications publish, and every gateway whose
retained index differs from the book gets a fresh one, including gateways seen only by their
``state`` (so a gateway that held alerts from before indexes existed learns that they are
gone).

A notification waits only while a sync is running (:meth:`MqttAlertLink.ready`): when the link
is not connected, or the broker refused the sync (the marker's PUBACK or a SUBACK carries a
failure reason code, or the marker never comes back), it fails at once and the outbox retries
it; a refused sync is logged at ERROR with the topic and the cause. Each alert state and index
carries the user property :data:`LINK_PROPERTY`; one published live by anyone else means a
second alert link on the prefix, logged at ERROR.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_service.alerts.errors import AlertError, DeliveryError
from cloud_service.alerts.outbox import Notification
from cloud_service.alerts.plant_index import ErrorGate, GatewayKey, IndexBook, marker_delay_s
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
#: How long a notification waits for a running sync (the book being rebuilt after a connect)
#: before it is retried by the outbox; it does not wait at all when the link is not connected.
_SYNC_TIMEOUT_S: Final = 10.0
#: How long the sync marker may take to come back before the sync is reported as failed.
_MARKER_TIMEOUT_S: Final = 30.0
#: A repeated error (refused sync, another link on the prefix) is logged at most this often.
_ERROR_EVERY_S: Final = 300.0
#: MQTT 5 user property naming the alert link that published an alert state or index.
LINK_PROPERTY: Final = "flightdeck-alert-link"

#: The lifecycle's open alerts the plant must hold, per gateway, in their current wire state
#: (all gateways, or only the one given): ``AlertService.plant_alerts``.
PlantAlerts = Callable[[GatewayKey | None], Mapping[GatewayKey, Sequence[Alert]]]


def alert_topic(scheme: TopicScheme, site: str, gateway: str, alert_id: str) -> str:
    return scheme.alert_topic(site, gateway, alert_id)


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def publisher_of(msg: mqtt.MQTTMessage) -> str | None:
    """The alert link that published ``msg`` (its :data:`LINK_PROPERTY`), if it says."""
    props = getattr(msg, "properties", None)
    for name, value in getattr(props, "UserProperty", None) or ():
        if name == LINK_PROPERTY:
            return str(value)
    return None


class MqttAlertLink:
    """One paho client for the alert channels (its own client id and session)."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: MqttAlertSettings,
        on_ack: AckHandler,
        *,
        plant_alerts: PlantAlerts | None = None,
        retry_s: float = 1.0,
        clock: Callable[[], int] = wall_ms,
        marker_timeout_s: float = _MARKER_TIMEOUT_S,
    ) -> None:
        self.mqtt_settings = mqtt_settings
        self.scheme = TopicScheme(mqtt_settings.topic_prefix)
        self.on_ack = on_ack
        #: the lifecycle's open alerts the plant must hold (``AlertService.plant_alerts``);
        #: None: nothing is republished (tests of the wire alone)
        self.plant_alerts = plant_alerts
        self.retry_s = retry_s
        self.clock = clock
        self.marker_timeout_s = marker_timeout_s
        self._decoder = MessageDecoder(AlertAck)
        self._alert_decoder = MessageDecoder(Alert)
        self._index_decoder = MessageDecoder(AlertIndex)
        client_id = settings.client_id or f"{mqtt_settings.client_id}-alerts"
        self.link_id = client_id
        self.sync_topic = f"{self.scheme.prefix}/alert-sync/{client_id}"
        self.book = IndexBook()
        self._sync_token = ""
        self._last_problem: str | None = None
        self._synced = asyncio.Event()
        self._changed = asyncio.Event()  # set (and replaced) on every change of the sync state
        #: why the current connection cannot sync (the broker refused the marker or a
        #: subscription, or the marker never came back); None while it may still
        self.sync_problem: str | None = None
        self._refusals = 0  # consecutive connections whose sync was refused
        self._marker_mid: int | None = None
        self._sub_mid: int | None = None
        self._marker_timer: asyncio.TimerHandle | None = None
        self._publish_refused: dict[int, str] = {}  # mid -> reason code of a failed PUBACK
        self._errors = ErrorGate(_ERROR_EVERY_S)
        self._props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        self._props.UserProperty = (LINK_PROPERTY, self.link_id)
        self._tasks: set[asyncio.Task[None]] = set()
        self.indexes_published = 0
        self.states_restored = 0  # open alerts republished because the broker had lost them
        self.foreign_seen = 0  # alert states or indexes published live by another client
        self.client = make_client(mqtt_settings, client_id=client_id, manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
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
        # a marker (sent by the loop, see ``_begin_sync``) that comes back after all of them.
        token = secrets.token_hex(8)
        s = self.scheme
        _rc, sub_mid = client.subscribe(
            [
                (s.subscription(Channel.ALERT_ACKS), 1),
                (s.subscription(Channel.ALERTS) + "/+", 1),
                (s.subscription(Channel.ALERT_INDEX), 1),
                (s.subscription(Channel.STATE), 1),
                (self.sync_topic, 1),
            ]
        )
        if self._loop is not None:  # in this order: the SUBACK is handled after it
            self._loop.call_soon_threadsafe(self._begin_sync, token, sub_mid)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("alerts MQTT disconnected: %s", reason)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._lost)

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        refused = [(i, str(c)) for i, c in enumerate(codes) if c.is_failure]
        if refused and self._loop is not None:
            self._loop.call_soon_threadsafe(self._subscriptions_refused, mid, refused)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        # Runs before paho marks the message published, so ``publish`` sees the reason.
        if reason.is_failure:
            self._publish_refused[mid] = str(reason)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._marker_refused, mid, str(reason))
        else:
            self._publish_refused.pop(mid, None)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._loop is None:
            return
        if msg.topic != self.sync_topic and msg.topic.endswith("/" + Channel.ALERT_ACKS.value):
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, msg)
        else:  # the book's messages are handled in their order, between connects
            self._loop.call_soon_threadsafe(self._on_book_message, msg)

    # the sync state (on the event loop) ------------------------------------------------------
    def _changed_now(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _begin_sync(self, token: str, sub_mid: int | None) -> None:
        self._sync_token = token
        self._sub_mid = sub_mid
        self._marker_mid = None
        self._synced.clear()
        self.sync_problem = None
        self.book = IndexBook()
        self._connected.set()
        self._changed_now()
        self._cancel_marker_timer()
        delay = marker_delay_s(self._refusals)
        if delay > 0:
            log.info("alert sync marker in %.0f s (refused %d times)", delay, self._refusals)
            self.sync_problem = self._last_problem
        assert self._loop is not None
        self._marker_timer = self._loop.call_later(delay, self._send_marker, token)

    def _send_marker(self, token: str) -> None:
        """Publish the sync marker (after the subscriptions, which were sent at connect) and
        give it ``marker_timeout_s`` to come back."""
        self._marker_timer = None
        if token != self._sync_token or not self._connected.is_set() or self._synced.is_set():
            return
        if self._marker_mid is None:  # the first marker of this connection: a sync is running
            self.sync_problem = None  # (one sent again after a lost one keeps the problem)
            self._changed_now()
        info = self.client.publish(self.sync_topic, token.encode(), qos=1)
        self._marker_mid = info.mid
        assert self._loop is not None
        self._marker_timer = self._loop.call_later(self.marker_timeout_s, self._marker_lost, token)

    def _cancel_marker_timer(self) -> None:
        if self._marker_timer is not None:
            self._marker_timer.cancel()
            self._marker_timer = None

    def _marker_refused(self, mid: int, reason: str) -> None:
        if mid != self._marker_mid or self._synced.is_set():
            return  # a refused alert publication: ``publish`` raises it to its caller
        self._marker_mid = None
        self._sync_refused(
            f"the broker refused the sync marker published on {self.sync_topic} ({reason})"
        )

    def _subscriptions_refused(self, mid: int, refused: list[tuple[int, str]]) -> None:
        if mid != self._sub_mid:
            return
        topics = [
            self.scheme.subscription(Channel.ALERT_ACKS),
            self.scheme.subscription(Channel.ALERTS) + "/+",
            self.scheme.subscription(Channel.ALERT_INDEX),
            self.scheme.subscription(Channel.STATE),
            self.sync_topic,
        ]
        what = ", ".join(f"{topics[i]} ({reason})" for i, reason in refused)
        book = [i for i, _ in refused if i > 0]
        if not book:  # only the acks: alerts still go out, acknowledgements do not come in
            if self._errors.allow("acks-refused", time.monotonic()):
                log.error(
                    "alerts MQTT: the broker refused the subscription to %s: plant "
                    "acknowledgements will not arrive; grant the cloud's user read access "
                    "(docs/protocol.md, broker ACLs)",
                    what,
                )
            return
        self._sync_refused(f"the broker refused the subscription to {what}")

    def _marker_lost(self, token: str) -> None:
        self._marker_timer = None
        if token != self._sync_token or self._synced.is_set() or not self._connected.is_set():
            return
        self._sync_refused(
            f"the sync marker published on {self.sync_topic} did not come back within "
            f"{self.marker_timeout_s:.0f} s (no read access to it?)",
            resend=True,
        )

    def _sync_refused(self, problem: str, *, resend: bool = False) -> None:
        """The index book cannot be rebuilt on this connection: say why, loudly, and fail alert
        publications at once with that reason until a sync succeeds."""
        self._cancel_marker_timer()
        self._refusals += 1
        self.sync_problem = self._last_problem = problem
        self._changed_now()
        if self._errors.allow(problem, time.monotonic()):
            log.error(
                "alerts MQTT: %s; alerts are not sent to the plant until the link can sync: "
                "the cloud's user needs read and write access to %s/alert-sync/# and read "
                "access to the alerts/+, alert-index and state topics (docs/protocol.md, "
                "broker ACLs)",
                problem,
                self.scheme.prefix,
            )
        if resend and self._loop is not None:  # the same connection: try the marker again
            delay = max(marker_delay_s(self._refusals), 1.0)
            self._marker_timer = self._loop.call_later(delay, self._send_marker, self._sync_token)

    def _lost(self) -> None:
        self._cancel_marker_timer()
        self._connected.clear()
        self._synced.clear()
        self._changed_now()

    # the index book (on the event loop) ------------------------------------------------------
    def _on_book_message(self, msg: mqtt.MQTTMessage) -> None:
        self.client.ack(msg.mid, msg.qos)
        payload = bytes(msg.payload)
        if msg.topic == self.sync_topic:
            if (
                payload.decode(errors="replace") == self._sync_token
                and not self._synced.is_set()
                and self._connected.is_set()
            ):
                self._cancel_marker_timer()
                self._spawn(self._finish_sync(self.book))
            return
        try:
            address = self.scheme.parse(msg.topic)
            key = (address.site, address.gateway)
            if address.channel == Channel.STATE:
                if self.book.seen_gateway(key) and self._synced.is_set():
                    self._spawn(self._publish_stale())
                return
            if not msg.retain:  # published live: ours (echoed), or another link's
                publisher = publisher_of(msg)
                if publisher != self.link_id:
                    self._foreign(msg.topic, publisher)
                return
            if self._synced.is_set():
                return  # replayed at a re-subscription: the book already knows them
            if address.channel == Channel.ALERTS and address.alert_id is not None:
                if payload:
                    alert = self._alert_decoder.decode(payload)
                    self.book.load_alert(key, address.alert_id, alert.rev)
            elif address.channel == Channel.ALERT_INDEX:
                self.book.load_index(key, self._index_decoder.decode(payload))
        except ContractError as exc:
            log.warning("alerts MQTT: ignoring retained %s: %s", msg.topic, exc)

    def _foreign(self, topic: str, publisher: str | None) -> None:
        """An alert state or index this link did not publish: another alert link (or an older
        cloud) publishes on the same prefix, and each one's indexes omit the other's alerts."""
        self.foreign_seen += 1
        who = f"alert link {publisher!r}" if publisher else "a client that does not say which"
        if self._errors.allow(f"foreign:{publisher}", time.monotonic()):
            log.error(
                "alerts MQTT: %s was published by %s, not by this link (%r): two alert links "
                "share the topic prefix %s, and the plant drops the alerts of the one whose "
                "index came last; run one alert link per prefix (docs/alerts.md)",
                topic,
                who,
                self.link_id,
                self.scheme.prefix,
            )

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish_sync(self, book: IndexBook) -> None:
        """The book is complete: republish every open alert the broker has lost (its current
        state, retained) before anything can publish an index without it, then let
        notifications through and publish the stale indexes."""
        delay = self.retry_s
        while book is self.book and self._connected.is_set():
            try:
                for key, alerts in sorted(self._plant_alerts(None).items()):
                    for alert in book.missing(key, alerts):
                        await self._restore(key, book, alert)
            except DeliveryError as exc:
                log.warning("open alerts not republished after the sync: %s; again in %.0f s",
                            exc, delay)  # fmt: skip
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if book is not self.book:
                return
            self._refusals = 0
            self._last_problem = None
            self.sync_problem = None
            self._synced.set()
            self._changed_now()
            await self._publish_stale()
            return

    def _plant_alerts(self, key: GatewayKey | None) -> Mapping[GatewayKey, Sequence[Alert]]:
        if self.plant_alerts is None:
            return {}
        try:
            return self.plant_alerts(key)
        except Exception as exc:  # not started yet: no index may be published meanwhile
            raise DeliveryError(f"open alerts unknown: {exc!r}", channel="mqtt",
                                recipient=self.sync_topic, retryable=True) from exc  # fmt: skip

    async def _restore(self, key: GatewayKey, book: IndexBook, alert: Alert) -> None:
        log.warning("alert %s of %s/%s is open but not retained on the broker (lost?): "
                    "republishing its current state", alert.id, *key)  # fmt: skip
        await self._publish_state(key, book, alert)
        self.states_restored += 1

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
        """Wait until the index book is rebuilt after a connect, through reconnects
        (DeliveryError if not in time)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout_s)
        except TimeoutError:
            raise DeliveryError("alert index not rebuilt yet", channel="mqtt",
                                recipient=self.sync_topic, retryable=True) from None  # fmt: skip

    async def ready(self, timeout_s: float) -> None:
        """Return once alerts may be published: at once if the book is synced; DeliveryError
        at once when not connected or when the sync was refused (the outbox retries later);
        wait (at most ``timeout_s``) only while a sync is running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not self._synced.is_set():
            if not self._connected.is_set() or not self.client.is_connected():
                raise DeliveryError("MQTT not connected", channel="mqtt",
                                    recipient=self.sync_topic, retryable=True)  # fmt: skip
            if self.sync_problem is not None:
                raise DeliveryError(f"alert index cannot be rebuilt: {self.sync_problem}",
                                    channel="mqtt", recipient=self.sync_topic,
                                    retryable=True)  # fmt: skip
            changed = self._changed
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                err = "alert index not rebuilt yet"
                raise DeliveryError(err, channel="mqtt", recipient=self.sync_topic,
                                    retryable=True) from None  # fmt: skip

    def _check_book(self, key: GatewayKey, book: IndexBook) -> None:
        if book is not self.book or not self._synced.is_set():
            raise DeliveryError("reconnected meanwhile: alert index rebuilt", channel="mqtt",
                                recipient=f"{key[0]}/{key[1]}", retryable=True)  # fmt: skip

    async def publish_index(self, key: GatewayKey, book: IndexBook) -> None:
        """Publish ``key``'s index from ``book``, unless a reconnect replaced the book meanwhile
        (it may be incomplete still, and it knows nothing of what was sent with the old one:
        DeliveryError, so the caller's notification is sent again). An open alert of the
        gateway that the book does not list (the broker lost it) is republished first: an
        index never omits an alert the lifecycle holds open."""
        self._check_book(key, book)
        for alert in book.missing(key, self._plant_alerts(key).get(key, ())):
            await self._restore(key, book, alert)
            self._check_book(key, book)
        index = book.index(key, self.clock())
        topic = self.scheme.topic(key[0], key[1], Channel.ALERT_INDEX)
        await self.publish(topic, encode(index), retain=True)
        book.published_index(key, index)
        self.indexes_published += 1

    async def _publish_state(self, key: GatewayKey, book: IndexBook, alert: Alert) -> None:
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

    async def publish_alert(self, key: GatewayKey, alert: Alert) -> None:
        """Publish one alert state for the plant (numbered), then the gateway's index."""
        await self.ready(_SYNC_TIMEOUT_S)
        book = self.book
        await self._publish_state(key, book, alert)
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
            self._lost()

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
        info = self.client.publish(topic, payload, qos=1, retain=retain, properties=self._props)
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
        refused = self._publish_refused.pop(info.mid, None)
        if refused is not None:  # a PUBACK with a failure reason code (an ACL, a quota)
            raise DeliveryError(f"the broker refused the publication: {refused}",
                                channel="mqtt", recipient=topic, retryable=True)  # fmt: skip


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
