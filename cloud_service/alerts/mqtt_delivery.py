"""Alerts to the plant over MQTT, and acknowledgements from the plant back into the lifecycle.

Topic layout (a documented extension of the contract's ``alerts`` channel): each alert is
published, retained, on its own sub-topic ``{prefix}/{site}/{gateway}/alerts/{alert_id}``. A
broker retains one message per topic, so one topic per alert is what lets a reconnecting
gateway receive the whole active set (active, or cleared and still unacknowledged) at once.
When an occurrence closes (cleared and acknowledged) its final state is published once, not
retained, and then an empty retained payload deletes it from the broker. Gateways subscribe
to ``{prefix}/{site}/{gateway}/alerts/+`` and treat an empty payload as "gone".
A cloud-side acknowledgement reaches the plant as the alert's new retained state (``acked``).

Acknowledgements arrive on ``{prefix}/+/+/alert-acks`` (QoS 1, persistent session, so acks
sent while the cloud was down are queued by the broker) and are PUBACKed only after the
lifecycle change is stored; a malformed or foreign ack is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import paho.mqtt.client as mqtt

from cloud_service.alerts.errors import AlertError, DeliveryError
from cloud_service.alerts.outbox import Notification
from cloud_service.alerts.settings import MqttAlertSettings
from cloud_service.ingest.mqtt_client import connect_properties, make_client
from cloud_service.settings import MqttSettings
from shared.codec import MessageDecoder
from shared.errors import ContractError, Reason
from shared.messages import AlertAck
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)

AckHandler = Callable[[AlertAck, str, str], Awaitable[object]]  # (ack, site, gateway)
CLOSED_KIND: Final = "alert.closed"
_PUBLISH_TIMEOUT_S: Final = 10.0


def alert_topic(scheme: TopicScheme, site: str, gateway: str, alert_id: str) -> str:
    return scheme.alert_topic(site, gateway, alert_id)


class MqttAlertLink:
    """One paho client for the alert channels (its own client id and session)."""

    def __init__(
        self,
        mqtt_settings: MqttSettings,
        settings: MqttAlertSettings,
        on_ack: AckHandler,
        *,
        retry_s: float = 1.0,
    ) -> None:
        self.mqtt_settings = mqtt_settings
        self.scheme = TopicScheme(mqtt_settings.topic_prefix)
        self.on_ack = on_ack
        self.retry_s = retry_s
        self._decoder = MessageDecoder(AlertAck)
        client_id = settings.client_id or f"{mqtt_settings.client_id}-alerts"
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
        client.subscribe(self.scheme.subscription(Channel.ALERT_ACKS), qos=1)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        log.warning("alerts MQTT disconnected: %s", reason)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._inbox.put_nowait, msg)

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
            self.client.disconnect()
            self.client.loop_stop()
            self._connected.clear()

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

    async def send(self, n: Notification) -> None:
        site, _, gateway = n.recipient.partition("/")
        if n.alert_id is None or not gateway:
            raise DeliveryError("not an alert for a gateway", channel=self.channel,
                                recipient=n.recipient, retryable=False)  # fmt: skip
        topic = alert_topic(self.link.scheme, site, gateway, n.alert_id)
        if n.kind == CLOSED_KIND:
            await self.link.publish(topic, n.payload, retain=False)
            await self.link.publish(topic, b"", retain=True)
        else:
            await self.link.publish(topic, n.payload, retain=True)
