"""Thin paho-mqtt 2.x shell: birth, state and telemetry out; acks in.

* MQTT 5, client id from the config (default: the gateway id), username/password and TLS
  from the config. paho runs its network loop in its own thread (``loop_start``) and
  reconnects by itself with an exponential backoff (``reconnect_delay_set``).
* The will is the retained ``State`` *offline* on the ``state`` topic (its ``ts`` is refreshed
  before every connect attempt, so it is the start of the session it ends). On every connect the
  agent publishes its retained ``Birth`` and a retained ``State`` *online*, and subscribes to
  its own ``ack`` topic. :meth:`MqttPublisher.stop` publishes *offline* itself and disconnects
  cleanly (a normal MQTT 5 disconnect discards the will).
* Telemetry goes out at QoS 1. Every ``publish()`` return code is checked: paho *returns*
  ``MQTT_ERR_QUEUE_SIZE`` (it does not raise) when its memory-only queue is full or the 16-bit
  message-id space of unacked messages is used up; that becomes :class:`QueueFullError`, and
  the caller still owns the batch. ``MQTT_ERR_NO_CONN`` at QoS 1 means *queued*, sent on
  reconnect. PUBACKs with an MQTT 5 failure reason (e.g. *not authorized* from an ACL) are
  counted and logged, as a broker may otherwise drop them silently.
* ``max_inflight_messages_set`` and ``max_queued_messages_set`` are set explicitly. paho's
  queue gets a few slots more than ``broker.max_queued``: telemetry may fill only
  ``max_queued`` of it (checked here), so birth/online/offline always fit, even after a long
  outage filled the queue. Should one still not fit, it is retried before the next batch.

Acks: the cloud publishes ``Ack{gateway, boot, seq}`` once every batch up to ``seq`` of a boot
is durably stored; the highest one for the current boot is kept in :attr:`last_acked_seq`.
Nothing deletes data on an ack yet: the SQLite spool that will is a later issue.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import BrokerConfig, TlsConfig
from edge_agent.errors import ConfigError, ConfigIssue, PublishError, QueueFullError
from shared.codec import MessageDecoder, encode
from shared.errors import ContractError
from shared.messages import Ack, Birth, GatewayState, State, TelemetryBatch
from shared.topics import Channel, TopicScheme

log = logging.getLogger(__name__)

QOS: Final = 1
#: Queue slots kept free of telemetry for birth, online and offline.
CONTROL_HEADROOM: Final = 4
# QoS 1 publish results that mean "queued": sent now, or on the next connection.
_QUEUED: Final = frozenset({MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN})


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class PublisherStatus:
    connected: bool
    connects: int  # successful CONNACKs since start
    last_acked_seq: int | None  # highest seq the cloud acked for this boot
    unacked: int  # messages queued or in flight without a PUBACK
    unacked_batches: int  # telemetry batches among them
    batches_sent: int  # telemetry batches handed to paho
    rejected: int  # PUBACKs carrying an MQTT 5 failure reason


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


class MqttPublisher:
    """One gateway's MQTT session. Thread-safe: paho calls back from its own thread."""

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
        wall_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.broker = broker
        self.gateway = gateway
        self.client_id = client_id
        self.boot = boot
        self._wall_ms = wall_ms
        self._birth_payload = encode(birth)
        self.telemetry_topic = topics.topic(site, gateway, Channel.TELEMETRY)
        self.birth_topic = topics.topic(site, gateway, Channel.BIRTH)
        self.state_topic = topics.topic(site, gateway, Channel.STATE)
        self.ack_topic = topics.topic(site, gateway, Channel.ACK)
        self._ack_decoder = MessageDecoder(Ack)

        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._pending: dict[int, str] = {}  # mid -> what it carried, until PUBACK
        self._pending_batches: set[int] = set()  # the telemetry mids among them
        self._early: set[int] = set()  # PUBACKs that beat the registration of their mid
        self._announce_pending = False  # birth/online could not be queued at connect
        self._connected = threading.Event()
        self._stopping = False
        self._started = False
        self._connects = 0
        self._batches_sent = 0
        self._rejected = 0
        self._last_acked_seq: int | None = None

        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
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
            "mqtt: connecting to %s:%d as %s (boot %s)",
            self.broker.host,
            self.broker.port,
            self.client_id,
            self.boot,
        )
        self._client.connect_async(
            self.broker.host, self.broker.port, keepalive=self.broker.keepalive_s
        )
        rc = self._client.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise PublishError(self.state_topic, rc, f"loop_start: {mqtt.error_string(rc)}")
        self._started = True

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish *offline*, wait up to ``timeout_s`` for unacked messages, disconnect.

        Blocking: call it from a thread (``asyncio.to_thread``) in async code.
        """
        if not self._started:
            return
        self._stopping = True
        if self._connected.is_set():
            offline = State(state=GatewayState.OFFLINE, boot=self.boot, ts=self._wall_ms())
            try:
                self._publish(self.state_topic, encode(offline), retain=True, label="offline")
            except PublishError as exc:
                log.error("mqtt: could not queue the offline state: %s", exc)
            self._wait_drained(timeout_s)
        with self._lock:
            left = len(self._pending)
        if left:
            log.warning("mqtt: stopping with %d message(s) not acknowledged by the broker", left)
        rc = self._client.disconnect()
        if rc not in _QUEUED:
            log.warning("mqtt: disconnect: %s", mqtt.error_string(rc))
        self._client.loop_stop()
        self._started = False
        self._connected.clear()

    # -- publishing -------------------------------------------------------------------------

    def publish_batch(self, batch: TelemetryBatch) -> int:
        """Queue one batch at QoS 1; return its message id.

        Raises :class:`QueueFullError` when paho's queue is full (the batch was not queued) and
        :class:`PublishError` for any other refusal.
        """
        if self._announce_pending and self._connected.is_set():
            self._announce()
        with self._lock:
            full = len(self._pending_batches) >= self.broker.max_queued
        if full:
            rc = MQTTErrorCode.MQTT_ERR_QUEUE_SIZE
            raise QueueFullError(
                self.telemetry_topic, rc, f"{self.broker.max_queued} batches unacknowledged"
            )
        mid = self._publish(
            self.telemetry_topic,
            encode(batch),
            retain=False,
            label=f"batch {batch.seq}",
            telemetry=True,
        )
        with self._lock:
            self._batches_sent += 1
        return mid

    def _publish(
        self, topic: str, payload: bytes, *, retain: bool, label: str, telemetry: bool = False
    ) -> int:
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        rc = info.rc
        if rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            raise QueueFullError(topic, rc, mqtt.error_string(rc))
        if rc not in _QUEUED:
            raise PublishError(topic, rc, mqtt.error_string(rc))
        # Never hold our lock while calling into paho: paho calls on_publish while holding its
        # own message lock, and on_publish takes ours.
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._pending[info.mid] = label
                if telemetry:
                    self._pending_batches.add(info.mid)
        return info.mid

    def _wait_drained(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._drained:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._connected.is_set():
                    return False
                self._drained.wait(min(remaining, 0.1))
            return True

    # -- status -----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_acked_seq(self) -> int | None:
        with self._lock:
            return self._last_acked_seq

    def status(self) -> PublisherStatus:
        with self._lock:
            return PublisherStatus(
                connected=self._connected.is_set(),
                connects=self._connects,
                last_acked_seq=self._last_acked_seq,
                unacked=len(self._pending),
                unacked_batches=len(self._pending_batches),
                batches_sent=self._batches_sent,
                rejected=self._rejected,
            )

    # -- paho callbacks (paho's thread; they must never raise) ------------------------------

    def _set_will(self, client: mqtt.Client) -> None:
        will = State(state=GatewayState.OFFLINE, boot=self.boot, ts=self._wall_ms())
        client.will_set(self.state_topic, encode(will), qos=QOS, retain=True)

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        # The will's ts is the start of the session it ends: refreshed before every (re)connect
        # rather than frozen at boot. It still predates the session's *online* state, so the
        # cloud must order states by arrival, not by ts.
        self._set_will(client)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.error("mqtt: broker refused the connection: %s", reason_code)
            return
        with self._lock:
            self._connects += 1
        self._connected.set()
        log.info("mqtt: connected to %s:%d", self.broker.host, self.broker.port)
        self._announce()
        rc, _mid = client.subscribe(self.ack_topic, qos=QOS)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.error("mqtt: subscribe to %s failed: %s", self.ack_topic, mqtt.error_string(rc))

    def _announce(self) -> None:
        """Queue the retained birth and *online* state (on connect; retried if refused)."""
        online = State(state=GatewayState.ONLINE, boot=self.boot, ts=self._wall_ms())
        try:
            self._publish(self.birth_topic, self._birth_payload, retain=True, label="birth")
            self._publish(self.state_topic, encode(online), retain=True, label="online")
        except PublishError as exc:
            self._announce_pending = True
            log.error("mqtt: could not queue birth/online state (retried later): %s", exc)
        else:
            self._announce_pending = False

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        with self._drained:
            self._drained.notify_all()
        if not self._stopping:
            log.warning("mqtt: disconnected (%s); paho reconnects with backoff", reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties,
    ) -> None:
        with self._drained:
            label = self._pending.pop(mid, None)
            self._pending_batches.discard(mid)
            if label is None:
                self._early.add(mid)
            if reason_code.is_failure:
                self._rejected += 1
            self._drained.notify_all()
        if reason_code.is_failure:
            log.error("mqtt: broker rejected %s: %s", label or f"mid {mid}", reason_code)

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
                log.error("mqtt: subscription to %s refused: %s", self.ack_topic, code)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic != self.ack_topic:
            return
        try:
            ack = self._ack_decoder.decode(bytes(message.payload))
        except ContractError as exc:
            log.warning("mqtt: ignoring a malformed ack: %s", exc)
            return
        if ack.gateway != self.gateway or ack.boot != self.boot:
            # Acks for an earlier boot matter to the spool (a later issue), not here.
            log.debug("mqtt: ack for %s/%s is not for this boot", ack.gateway, ack.boot)
            return
        with self._lock:
            if self._last_acked_seq is None or ack.seq > self._last_acked_seq:
                self._last_acked_seq = ack.seq
