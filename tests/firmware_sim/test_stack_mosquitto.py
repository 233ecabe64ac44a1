"""The broker harness must reproduce the production broker's behaviour.

These run real ``mosquitto`` processes: if the harness silently dropped ACLs,
TLS or persistence, every higher-level test built on it would pass for the
wrong reason.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.stack import (
    MosquittoOptions,
    MosquittoServer,
    ServiceStartError,
    mqtt_connack_code,
)

pytestmark = pytest.mark.integration

WAIT = 5.0


class SyncClient:
    """Blocking wrapper over paho's threaded loop, enough for harness tests."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_cert: Path | None = None,
        client_cert: tuple[Path, Path] | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> None:
        self.port = port
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        # No auto-reconnect: a refused or dropped connection must stay visible
        # (and teardown must not wait out paho's reconnect back-off).
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_cert is not None:
            certfile, keyfile = client_cert if client_cert else (None, None)
            self.client.tls_set(
                ca_certs=str(ca_cert),
                certfile=str(certfile) if certfile else None,
                keyfile=str(keyfile) if keyfile else None,
            )
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.session_present = False
        self._connected = threading.Event()
        self._ended = threading.Event()
        self._subacks: queue.Queue[list[ReasonCode]] = queue.Queue()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connack = reason_code
        self.session_present = flags.session_present
        (self._ended if reason_code.is_failure else self._connected).set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._ended.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        self._subacks.put(reason_codes)

    def connect(self) -> ReasonCode | None:
        """CONNACK reason code, or None if the transport (e.g. TLS) failed first."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        try:
            self.client.connect(
                "127.0.0.1", self.port, clean_start=self.clean_start, properties=props
            )
        except OSError:  # includes ssl.SSLError
            return None
        self.client.loop_start()
        for _ in range(int(WAIT / 0.01)):
            if self._connected.is_set() or self._ended.is_set():
                break
            self._connected.wait(0.01)
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        self.client.subscribe(topic, qos=qos)
        return self._subacks.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        info.wait_for_publish(timeout=WAIT)

    def wait_disconnected(self) -> bool:
        return self._ended.wait(WAIT)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., SyncClient]]:
    """Factory of ``SyncClient``; all are closed at teardown."""
    made: list[SyncClient] = []

    def make(*args: Any, **kwargs: Any) -> SyncClient:
        client = SyncClient(*args, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_anonymous_qos1_round_trip(
    mosquitto: MosquittoServer,
    clients: Callable[..., SyncClient],
    unique_name: Callable[[str], str],
) -> None:
    topic = f"test/{unique_name('rt')}/telemetry"
    sub = clients(mosquitto.port, unique_name("sub"))
    pub = clients(mosquitto.port, unique_name("pub"))
    assert sub.connect() == 0
    assert pub.connect() == 0
    assert sub.subscribe(topic) == [1]  # granted QoS 1

    pub.publish(topic, b"hello")

    assert sub.next_message() == (topic, b"hello")


def test_queue_limit_is_unlimited_for_offline_sessions(
    mosquitto: MosquittoServer,
    clients: Callable[..., SyncClient],
    unique_name: Callable[[str], str],
) -> None:
    """Mosquitto's default (1000) would silently drop the tail of this backlog."""
    topic = f"test/{unique_name('q')}"
    sub_id = unique_name("sub")
    sub = clients(mosquitto.port, sub_id, clean_start=False, session_expiry=300)
    assert sub.connect() == 0
    sub.subscribe(topic)
    sub.close()
    pub = clients(mosquitto.port, unique_name("pub"))
    assert pub.connect() == 0
    infos = [pub.client.publish(topic, str(i).encode(), qos=1) for i in range(1500)]
    for info in infos:
        info.wait_for_publish(timeout=WAIT)

    again = clients(mosquitto.port, sub_id, clean_start=False, session_expiry=0)
    assert again.connect() == 0
    received = [int(again.next_message()[1]) for _ in range(1500)]

    assert received == list(range(1500))


def test_users_and_acl_confine_a_gateway_to_its_own_topics(
    fresh_mosquitto: Callable[..., MosquittoServer],
    clients: Callable[..., SyncClient],
) -> None:
    broker = fresh_mosquitto(
        MosquittoOptions(
            users={"cloud": "cloud-pw", "gw1": "gw1-pw"},
            acl=[
                "user cloud",
                "topic readwrite #",
                "pattern write flightdeck/v1/+/%u/telemetry",
                "pattern read flightdeck/v1/+/%u/commands",
            ],
        )
    )
    cloud = clients(broker.port, "cloud-1", username="cloud", password="cloud-pw")
    gw = clients(broker.port, "gw1-1", username="gw1", password="gw1-pw")
    spoofer = clients(broker.port, "gw1-2", username="gw1", password="gw1-pw")
    assert cloud.connect() == 0
    assert gw.connect() == 0
    assert spoofer.connect() == 0
    cloud.subscribe("flightdeck/#")

    # Mosquitto 2.0 answers a denied PUBLISH (any QoS) by dropping the
    # connection (eclipse-mosquitto/mosquitto#2579): clients must not retry
    # a denied topic in a tight reconnect loop.
    spoofer.client.publish("flightdeck/v1/site1/gw2/telemetry", b"spoofed", qos=1)
    assert spoofer.wait_disconnected()
    # Had the spoofed message been routed, it would already sit in cloud's
    # queue ahead of this one.
    gw.publish("flightdeck/v1/site1/gw1/telemetry", b"own")
    assert cloud.next_message() == ("flightdeck/v1/site1/gw1/telemetry", b"own")

    # Subscribing to everything must not leak other gateways' traffic. Same
    # ordering argument: the denied message is published first.
    gw.subscribe("#")
    cloud.publish("flightdeck/v1/site1/gw2/commands", b"not for gw1")
    cloud.publish("flightdeck/v1/site1/gw1/commands", b"for gw1")
    assert gw.next_message() == ("flightdeck/v1/site1/gw1/commands", b"for gw1")
    assert gw.messages.empty()

    assert mqtt_connack_code(broker.host, broker.port) == 5  # anonymous: not authorised
    wrong = clients(broker.port, "gw1-3", username="gw1", password="wrong")
    code = wrong.connect()
    assert code is not None
    assert code.is_failure


def test_tls_listener_trusting_the_ca(
    fresh_mosquitto: Callable[..., MosquittoServer],
    clients: Callable[..., SyncClient],
) -> None:
    broker = fresh_mosquitto(MosquittoOptions(tls=True))
    assert broker.tls is not None
    assert broker.tls_port is not None
    client = clients(broker.tls_port, "tls-1", ca_cert=broker.tls.ca_cert)
    assert client.connect() == 0

    # System CAs only: the private test CA must not verify.
    with pytest.raises(ssl.SSLCertVerificationError):
        mqtt_connack_code(broker.host, broker.tls_port, ssl_context=ssl.create_default_context())


def test_tls_client_certificate_required(
    fresh_mosquitto: Callable[..., MosquittoServer],
    clients: Callable[..., SyncClient],
) -> None:
    broker = fresh_mosquitto(MosquittoOptions(tls=True, require_certificate=True))
    assert broker.tls is not None
    assert broker.tls_port is not None

    # Raw probe rather than paho: paho leaks the socket when the handshake fails.
    # TLS 1.3 completes the client side of the handshake and fails on the first
    # read, racing the broker's close: "certificate required" alert, EOF or reset.
    no_cert = ssl.create_default_context(cafile=broker.tls.ca_cert)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        mqtt_connack_code(broker.host, broker.tls_port, ssl_context=no_cert)

    with_cert = clients(
        broker.tls_port,
        "with-cert",
        ca_cert=broker.tls.ca_cert,
        client_cert=broker.client_cert("gw7"),
    )
    assert with_cert.connect() == 0
    # use_identity_as_username: the cert's CN became the MQTT username.
    assert "u'gw7'" in broker.log_path.read_text()


def test_persistent_session_survives_broker_restart(
    fresh_mosquitto: Callable[..., MosquittoServer],
    clients: Callable[..., SyncClient],
) -> None:
    broker = fresh_mosquitto()
    port = broker.port
    sub = clients(port, "persistent-sub", clean_start=False, session_expiry=300)
    assert sub.connect() == 0
    sub.subscribe("plant/line1")
    sub.close()
    pub = clients(port, "pub")
    assert pub.connect() == 0
    pub.publish("plant/line1", b"queued while offline")
    pub.close()

    # Graceful stop: Mosquitto writes its database on SIGTERM (and otherwise
    # only every autosave_interval), so a kill -9 here could lose the message.
    broker.restart()

    assert broker.port == port
    again = clients(port, "persistent-sub", clean_start=False, session_expiry=300)
    assert again.connect() == 0
    assert again.session_present
    assert again.next_message() == ("plant/line1", b"queued while offline")


def test_kill_then_restart_comes_back_on_the_same_port(
    fresh_mosquitto: Callable[..., MosquittoServer],
) -> None:
    broker = fresh_mosquitto()
    port, pid = broker.port, broker.pid

    broker.kill()
    assert not broker.is_running()
    assert mqtt_connack_code_or_none(broker) is None
    broker.kill()  # idempotent
    broker.stop()

    broker.restart()
    assert broker.is_running()
    assert broker.pid != pid
    assert broker.port == port
    assert mqtt_connack_code(broker.host, broker.port) == 0


def mqtt_connack_code_or_none(broker: MosquittoServer) -> int | None:
    try:
        return mqtt_connack_code(broker.host, broker.port, timeout=0.5)
    except OSError:
        return None


def test_bad_config_fails_with_the_log_tail(tmp_path: Path) -> None:
    broker = MosquittoServer(tmp_path, MosquittoOptions(extra=["no_such_option 1"]))
    with pytest.raises(ServiceStartError) as excinfo:
        broker.start(timeout=5)

    assert excinfo.value.service == "mosquitto"
    assert "no_such_option" in excinfo.value.log_tail
    assert not broker.is_running()


def test_a_port_taken_before_the_first_start_is_replaced(tmp_path: Path) -> None:
    """free_port() can race other processes; before anyone knows the port, re-pick."""
    broker = MosquittoServer(tmp_path)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind((broker.host, broker.port))
        squatter.listen()
        taken = broker.port

        broker.start()
        try:
            assert broker.port != taken
            assert mqtt_connack_code(broker.host, broker.port) == 0
        finally:
            broker.stop()
    assert "Address already in use" in broker.log_tail(since_start=False)
