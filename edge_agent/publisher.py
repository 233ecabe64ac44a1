"""Thin paho-mqtt 2.x shell: publishes what the agent decides, reports what happens.

* MQTT 5, falling back to 3.1.1 for the rest of the run when the broker refuses 5
  (``broker.protocol = "auto"``, the default; the decision is :mod:`edge_agent.mqtt_version`);
  ``"5"`` or ``"3.1.1"`` pin it. Client id from the config (default: the gateway id),
  username/password and TLS. paho runs its network loop in its own thread and reconnects with
  an exponential backoff. Its queue is memory only: the spool, not paho, is what survives.
* The will is the retained ``State`` *offline* (its ``ts`` refreshed before every connect). On
  every connect the publisher queues the retained ``Birth`` and ``State`` *online* and
  subscribes to its ``ack``, ``alerts``, ``alert-index`` and ``cmd`` topics. :meth:`stop`
  publishes *offline* itself and disconnects cleanly (a normal disconnect discards the will).
* Alerts: each retained ``alerts/{id}`` state goes to the agent (``on_alert``); an empty
  payload there means the alert closed, and the retained ``AlertIndex`` says which alerts are
  still open: what the agent holds and the cloud says is gone (an alert that closed while the
  gateway was away) is handed to the agent as its closed state
  (:func:`edge_agent.alerts.gone_by_index`), so the plant converges on the cloud's open set on
  every (re)connect, whatever order the broker replays the retained messages in.
* Every ``publish()`` return code is checked: ``MQTT_ERR_QUEUE_SIZE`` (queue full, or the
  16-bit message-id space of unacked messages used up) becomes :class:`QueueFullError`, any
  other refusal :class:`PublishError`; ``MQTT_ERR_NO_CONN`` at QoS 1 means *queued*. paho's
  queue gets :data:`CONTROL_HEADROOM` slots more than ``broker.max_queued`` so birth/online/
  offline always fit; the agent keeps telemetry under ``delivery.window`` anyway.
* Events (connect, disconnect, PUBACK, ack, alert, command) are handed to the agent's event loop
  with ``call_soon_threadsafe``: all state lives on that one thread. A PUBACK can therefore
  never be processed before the publish call that returned its message id has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Protocol

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.alerts import closed_copy, gone_by_index
from edge_agent.config import BrokerConfig, TlsConfig
from edge_agent.errors import ConfigError, ConfigIssue, PublishError, QueueFullError
from edge_agent.mqtt_version import V5, VersionChoice
from shared.codec import MessageDecoder, encode
from shared.errors import ContractError
from shared.ids import Id
from shared.messages import Ack, Alert, AlertIndex, Birth, Command, GatewayState, Seq, State
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)

QOS: Final = 1
#: Queue slots kept free of telemetry for birth, online and offline.
CONTROL_HEADROOM: Final = 8
# QoS 1 publish results that mean "queued": sent now, or on the next connection.
_QUEUED: Final = frozenset({MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN})


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class TelemetryEnvelope(msgspec.Struct, kw_only=True):
    """A ``TelemetryBatch`` whose readings are already JSON (straight from the spool)."""

    gateway: Id
    boot: Id
    seq: Seq
    first_unacked: Seq
    historical: bool
    clock_step_ms: int
    readings: msgspec.Raw


class PublisherEvents(Protocol):
    """What the publisher reports, always on the event loop's thread."""

    def on_connected(self) -> None: ...

    def on_disconnected(self, reason: str) -> None: ...

    def on_puback(self, mid: int, failure: str | None) -> None: ...

    def on_ack(self, ack: Ack, retained: bool) -> None: ...

    def on_alert(self, alert: Alert) -> None: ...

    def active_alerts(self) -> list[Alert]: ...

    def on_command(self, command: Command) -> None: ...


class _PahoNoise(logging.Filter):
    """Drops paho 2.2's ERROR "Client is not connected" logged by every idle loop turn
    while (re)connecting or after a clean disconnect; disconnects are logged by us."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Client is not connected")


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client TLS context (TLS >= 1.2, hostname checked) from the broker's TLS config."""
    try:
        context = ssl.create_default_context(
            cafile=None if tls.ca_file is None else str(tls.ca_file)
        )
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(None, [ConfigIssue("broker.tls", f"unusable TLS files: {exc}")]) from exc
    return context


_PAHO_VERSION: Final = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}


def _switch_protocol(client: mqtt.Client, version: str) -> None:
    """Make the next CONNECT of ``client`` use ``version``.

    paho fixes the version in the constructor; a new client would lose its queue and
    callbacks, so this sets the two attributes paho's own 3.1.1 -> 3.1 downgrade sets
    (``_protocol``; a clean session for 3.1.1, as the publisher asks of 3.1.1 anyway).
    """
    client._protocol = _PAHO_VERSION[version]
    if version != "5":
        client._clean_session = True


class MqttPublisher:
    """One gateway's MQTT session (see the module docstring)."""

    def __init__(
        self,
        broker: BrokerConfig,
        *,
        topics: TopicScheme,
        site: str,
        gateway: str,
        client_id: str,
        boot: str,
        birth: Birth,
        events: PublisherEvents,
        loop: asyncio.AbstractEventLoop,
        wall_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.broker = broker
        self.gateway = gateway
        self.client_id = client_id
        self.boot = boot
        self._events = events
        self._loop = loop
        self._wall_ms = wall_ms
        self._birth_payload = encode(birth)
        self.topic = {ch: topics.topic(site, gateway, ch) for ch in Channel}
        # Subscriptions: one retained topic per alert (``alerts/{id}``) gives the active set.
        self._inbound = {
            self.topic[Channel.ACK]: Channel.ACK,
            topics.alerts_subscription(site, gateway): Channel.ALERTS,
            self.topic[Channel.ALERT_INDEX]: Channel.ALERT_INDEX,
            self.topic[Channel.CMD]: Channel.CMD,
        }
        self._alerts_prefix = self.topic[Channel.ALERTS] + "/"
        self._ack_decoder = MessageDecoder(Ack)
        self._alert_decoder = MessageDecoder(Alert)
        self._index_decoder = MessageDecoder(AlertIndex)
        self._command_decoder = MessageDecoder(Command)
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._unacked = 0  # our publishes without PUBACK (for a graceful stop)
        self._stopping = False
        self._started = False
        self.connects = 0
        self.rejected = 0  # PUBACKs carrying an MQTT 5 failure reason

        self.version = VersionChoice(broker.protocol)
        self._connect_pending = False  # a CONNECT went out and no CONNACK came back yet
        v5 = self.version.version == V5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        paho_log = logging.getLogger(f"{__name__}.paho")
        if not any(isinstance(f, _PahoNoise) for f in paho_log.filters):
            paho_log.addFilter(_PahoNoise())
        client.enable_logger(paho_log)
        client.max_inflight_messages_set(broker.max_inflight)
        client.max_queued_messages_set(broker.max_queued + CONTROL_HEADROOM)
        client.reconnect_delay_set(broker.reconnect_min_s, broker.reconnect_max_s)
        if broker.username is not None:
            password = None if broker.password is None else broker.password.get_secret_value()
            client.username_pw_set(broker.username, password)
        if broker.tls is not None:
            client.tls_set_context(tls_context(broker.tls))
        self._set_will(client)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start paho's network thread; it connects (and reconnects) in the background."""
        if self._started:
            return
        log.info(
            "mqtt: connecting to %s:%d as %s (MQTT %s, boot %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            self.version.describe,
            self.boot,
        )
        self._client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s
        )
        rc = self._client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishError(
                self.topic[Channel.STATE], rc, f"loop_start: {mqtt.error_string(rc)}"
            )
        self._started = True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish *offline*, wait up to ``timeout_s`` for PUBACKs, disconnect. Blocking: call it
        from a thread in async code."""
        if not self._started:
            return
        self._stopping = True
        if self._connected.is_set():
            offline = State(state=GatewayState.OFFLINE, boot=self.boot, ts=self._wall_ms())
            try:
                self.publish(Channel.STATE, encode(offline), retain=True)
            except PublishError as exc:
                log.error("mqtt: could not queue the offline state: %s", exc)
            deadline = time.monotonic() + timeout_s
            while self._connected.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._unacked <= 0:
                        break
                time.sleep(0.02)
        rc = self._client.disconnect()
        if rc not in _QUEUED:
            log.warning("mqtt: disconnect: %s", mqtt.error_string(rc))
        self._client.loop_stop()
        self._started = False
        self._connected.clear()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def set_birth(self, birth: Birth, *, publish_now: bool) -> None:
        """Replace the birth (drop counts, a reloaded config); publish it now if connected."""
        self._birth_payload = encode(birth)
        if publish_now and self._connected.is_set():
            try:
                self.publish(Channel.BIRTH, self._birth_payload, retain=True)
            except PublishError as exc:
                log.warning("mqtt: birth not republished now (next connect will): %s", exc)

    # -- publishing -------------------------------------------------------------------------

    def publish(self, channel: Channel, payload: bytes, *, retain: bool = False) -> int:
        """Queue ``payload`` at QoS 1 on ``channel``; return its message id.

        Raises :class:`QueueFullError` when paho's queue is full (nothing was queued) and
        :class:`PublishError` for any other refusal.
        """
        topic = self.topic[channel]
        try:
            info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        except ValueError as exc:  # payload too large, bad topic: paho raises these
            raise PublishError(topic, int(MQTTErrorCode.MQTT_ERR_INVAL), str(exc)) from None
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise QueueFullError(topic, rc, mqtt.error_string(rc))
        if rc not in _QUEUED:
            raise PublishError(topic, rc, mqtt.error_string(rc))
        with self._lock:
            self._unacked += 1
        return info.mid

    # -- paho callbacks (paho's thread; they must never raise) ------------------------------

    def _emit(self, callback: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the agent is gone
            self._loop.call_soon_threadsafe(callback, *args)

    def _set_will(self, client: mqtt.Client) -> None:
        will = State(state=GatewayState.OFFLINE, boot=self.boot, ts=self._wall_ms())
        client.will_set(self.topic[Channel.STATE], encode(will), qos=QOS, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if client.protocol != _PAHO_VERSION[self.version.version]:
            _switch_protocol(client, self.version.version)
        self._connect_pending = True
        self._set_will(client)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._connect_pending = False  # no TCP/TLS connection: not the broker's answer

    def _on_version_change(self, changed: bool) -> None:
        if changed:
            log.warning(
                "mqtt: %s:%d does not speak MQTT 5; using %s from now on",
                self.broker.host,
                self.broker.port,
                self.version.describe,
            )

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connect_pending = False
        if reason_code.is_failure:
            log.error("mqtt: broker refused the connection: %s", reason_code)
            self._on_version_change(self.version.refused(reason_code.value))
            return
        self.version.connected()
        self.connects += 1
        self._connected.set()
        log.info("mqtt: connected to %s:%d", self.broker.host, self.broker.port)
        online = State(state=GatewayState.ONLINE, boot=self.boot, ts=self._wall_ms())
        try:
            self.publish(Channel.BIRTH, self._birth_payload, retain=True)
            self.publish(Channel.STATE, encode(online), retain=True)
        except PublishError as exc:
            log.error("mqtt: could not queue birth/online state: %s", exc)
        rc, _mid = client.subscribe([(topic, QOS) for topic in self._inbound])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("mqtt: subscribe failed: %s", mqtt.error_string(rc))
        self._emit(self._events.on_connected)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._connect_pending and not self._stopping:
            self._connect_pending = False
            self._on_version_change(self.version.closed_without_connack())
        if not self._stopping:
            log.warning("mqtt: disconnected (%s); paho reconnects with backoff", reason_code)
        if was_connected:
            self._emit(self._events.on_disconnected, str(reason_code))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._lock:
            self._unacked -= 1
        failure: str | None = None
        if reason_code.is_failure:
            self.rejected += 1
            failure = str(reason_code)
            log.error("mqtt: broker rejected message %d: %s", mid, reason_code)
        self._emit(self._events.on_puback, mid, failure)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code_list: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for code in reason_code_list:
            if code.is_failure:
                log.error("mqtt: a subscription was refused: %s", code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        channel = self._inbound.get(message.topic)
        if channel is None and message.topic.startswith(self._alerts_prefix):
            channel = Channel.ALERTS
        payload = bytes(message.payload)
        try:
            if channel is Channel.ACK:
                ack = self._ack_decoder.decode(payload)
                if ack.gateway == self.gateway:
                    self._emit(self._events.on_ack, ack, bool(message.retain))
            elif channel is Channel.ALERTS:
                if not payload:  # a closed alert's retained copy removed
                    self._emit(self._alert_gone, message.topic[len(self._alerts_prefix) :])
                    return
                alert = self._alert_decoder.decode(payload)
                self._emit(self._events.on_alert, alert)
            elif channel is Channel.ALERT_INDEX:
                if payload:
                    index = self._index_decoder.decode(payload)
                    if index.gateway == self.gateway:
                        self._emit(self._reconcile, index)
            elif channel is Channel.CMD:
                self._emit(self._events.on_command, self._command_decoder.decode(payload))
        except ContractError as exc:
            log.warning("mqtt: ignoring a malformed message on %s: %s", message.topic, exc)

    # -- alert removals, on the event loop (in order with on_alert) -------------------------

    def _alert_gone(self, alert_id: str) -> None:
        held = next((a for a in self._events.active_alerts() if a.id == alert_id), None)
        if held is not None:
            self._events.on_alert(closed_copy(held))

    def _reconcile(self, index: AlertIndex) -> None:
        held = self._events.active_alerts()
        gone = set(gone_by_index(held, index))
        if gone:
            log.info("alert index: %d alert(s) closed in the cloud meanwhile", len(gone))
        for alert in held:
            if alert.id in gone:
                self._events.on_alert(closed_copy(alert))
