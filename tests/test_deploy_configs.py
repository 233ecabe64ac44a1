"""The configs shipped for docker-compose users are valid for the code they run.

There is no Docker engine in CI: the Dockerfile and docker-compose.yml are checked by reading
them, and the broker's config, ACL and password file by running the real ``mosquitto`` with
them (paths and the listener adapted in a temporary copy).
"""

from __future__ import annotations

import getpass
import os
import pwd
import queue
import re
import shlex
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.settings import load_settings
from edge_agent.config import load_config
from firmware_sim.stack import BinaryNotFoundError, MosquittoServer, mqtt_connack_code
from shared.topics import EDGE_TO_CLOUD, Channel, TopicScheme

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SCHEME = TopicScheme()
WAIT = 5.0


def test_compose_configs_load() -> None:
    edge = load_config(DEPLOY / "edge.toml")
    cloud = load_settings(DEPLOY / "cloud.toml")
    assert edge.broker.host == cloud.mqtt.host == "mosquitto"
    assert cloud.influx.url == "http://influxdb:8086"
    # Both log in; a gateway's username is its gateway id (the ACL's %u).
    assert cloud.mqtt.username == "cloud"
    assert cloud.mqtt.password is not None
    assert edge.broker.username == edge.gateway
    assert edge.broker.password is not None


# -- the image --------------------------------------------------------------------------------


def _dockerfile() -> tuple[dict[str, str], str | None, str]:
    """(ENV values, the last USER, the RUN commands joined), continuation lines folded."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    user = None
    runs = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
        elif word == "USER":
            user = rest.strip()
        elif word == "RUN":
            runs.append(rest)
    return env, user, "\n".join(runs)


def _owned_dirs(runs: str, user: str) -> set[str]:
    """Folders the RUN commands create with ``install -d -o <user>``."""
    dirs: set[str] = set()
    for command in re.split(r"&&|;|\n", runs):
        words = shlex.split(command)
        if words[:2] == ["install", "-d"] and "-o" in words:
            if words[words.index("-o") + 1] != user:
                continue
            skip = {"-o", "-g", "-m"}
            args = words[2:]
            dirs |= {w for i, w in enumerate(args) if w.startswith("/") and args[i - 1] not in skip}
    return dirs


def test_the_image_runs_as_its_own_user_with_writable_folders() -> None:
    env, user, runs = _dockerfile()
    assert user not in (None, "root", "0", "nobody"), user
    assert user is not None
    assert re.search(rf"useradd\b.*\b{user}\b", runs), runs
    owned = _owned_dirs(runs, user)
    # numba's cache=True needs a writable cache folder: HOME=/nonexistent has none.
    assert env.get("NUMBA_CACHE_DIR") in owned, (env, owned)
    assert env.get("HOME") in owned, (env, owned)
    # What the services write lands in a folder the user owns, where compose mounts a volume.
    data = "/var/lib/flightdeck"
    assert data in owned
    edge = load_config(DEPLOY / "edge.toml")
    assert edge.spool_path.parent == Path(data)
    cloud = load_settings(DEPLOY / "cloud.toml")
    assert cloud.metadata.url.get_secret_value().endswith(f"//{data}/metadata.sqlite")
    compose = (ROOT / "docker-compose.yml").read_text()
    for volume in ("cloud-data", "edge-data"):
        assert f'"{volume}:{data}"' in compose, volume


# -- compose ----------------------------------------------------------------------------------


def _compose_lines() -> list[str]:
    lines = (ROOT / "docker-compose.yml").read_text().splitlines()
    return [line.split("#", 1)[0] for line in lines if not line.lstrip().startswith("#")]


def test_compose_publishes_ports_on_loopback_only() -> None:
    mappings = [
        m for line in _compose_lines() for m in re.findall(r"""["']([0-9.]*:?\d+:\d+)["']""", line)
    ]
    assert len(mappings) >= 3, mappings  # broker, InfluxDB, API
    assert all(m.startswith("127.0.0.1:") for m in mappings), mappings


def test_compose_password_defaults_match_the_demo_configs() -> None:
    compose = "\n".join(_compose_lines())
    edge = load_config(DEPLOY / "edge.toml")
    cloud = load_settings(DEPLOY / "cloud.toml")
    assert edge.broker.password is not None
    assert cloud.mqtt.password is not None
    for variable, password in (
        ("FLIGHTDECK_CLOUD_MQTT__PASSWORD", cloud.mqtt.password.get_secret_value()),
        ("FLIGHTDECK_EDGE_BROKER__PASSWORD", edge.broker.password.get_secret_value()),
    ):
        match = re.search(rf'{variable}: "\$\{{\w+:-(?P<default>[^}}]*)\}}"', compose)
        assert match is not None, variable
        assert match["default"] == password
        assert "demo" in password.lower()  # clearly marked as not a secret


# -- the broker -------------------------------------------------------------------------------


def _conf_values(name: str) -> list[str]:
    text = (DEPLOY / "mosquitto.conf").read_text()
    return re.findall(rf"^{name}\s+(\S.*?)\s*$", text, flags=re.MULTILINE)


def test_broker_requires_login_and_sets_finite_queue_limits() -> None:
    assert _conf_values("allow_anonymous") == ["false"]
    assert _conf_values("password_file")
    assert _conf_values("acl_file")
    # Mosquitto's default (1000) drops QoS 1 messages silently, 0 is unbounded: explicit.
    [messages] = _conf_values("max_queued_messages")
    [size] = _conf_values("max_queued_bytes")
    assert int(messages) >= 10_000
    assert int(size) >= 64 * 1024 * 1024
    compose = "\n".join(_compose_lines())
    for path in (*_conf_values("password_file"), *_conf_values("acl_file")):
        name = path.removeprefix("/mosquitto/config/")
        assert f"./deploy/{name}:{path}:ro" in compose, path
        assert (DEPLOY / name).is_file(), name


class ShippedBroker(MosquittoServer):
    """The real mosquitto with deploy/mosquitto.conf, its ACL and password file."""

    def _write_config(self) -> None:
        text = (DEPLOY / "mosquitto.conf").read_text()
        for old, new in (
            ("/mosquitto/config/", f"{DEPLOY}/"),
            ("/mosquitto/data/", f"{self.data_dir}/"),
            ("\nlistener 1883\n", f"\nlistener {self.port} {self.host}\n"),
        ):
            assert old in text, f"deploy/mosquitto.conf no longer has {old!r}"
            text = text.replace(old, new)
        # Started as root, mosquitto would switch to the "mosquitto" user otherwise.
        text += f"\nuser {_current_user()}\nlog_dest stderr\nconnection_messages true\n"
        self.config_path.write_text(text)


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return getpass.getuser()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ShippedBroker]:
    try:
        server = ShippedBroker(tmp_path / "mosquitto")
    except BinaryNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    server.start()
    yield server
    server.stop()


class Client:
    """A blocking MQTT 5 client: connect, publish, subscribe, next message."""

    def __init__(self, broker: MosquittoServer, client_id: str, user: str, password: str) -> None:
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connack: queue.Queue[Any] = queue.Queue()
        self._suback = threading.Event()
        self.pubacks: queue.Queue[Any] = queue.Queue()  # PUBACK reason codes
        self.disconnected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id, protocol=mqtt.MQTTv5)
        self.client.username_pw_set(user, password)
        self.client.on_connect = lambda _c, _u, _f, reason, _p: self._connack.put(reason)
        self.client.on_disconnect = lambda *_: self.disconnected.set()
        self.client.on_subscribe = lambda *_: self._suback.set()
        self.client.on_publish = lambda _c, _u, _mid, reason, _p: self.pubacks.put(reason)
        self.client.on_message = lambda _c, _u, m: self.messages.put((m.topic, m.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.reason = self._connack.get(timeout=WAIT)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def refused(self, topic: str) -> bool:
        """Publish (QoS 1) and tell whether the broker refused it: Mosquitto 2.0.11 answers
        an MQTT 5 client with a "not authorised" PUBACK (a 3.1.1 client gets a plain PUBACK,
        or is dropped by later 2.0 releases)."""
        self.publish(topic, b"spoofed")
        try:
            return bool(self.pubacks.get(timeout=WAIT).is_failure)
        except queue.Empty:
            return self.disconnected.is_set()

    def subscribe(self, topic: str) -> None:
        self._suback.clear()
        self.client.subscribe(topic, qos=1)
        assert self._suback.wait(WAIT)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def connect(broker: ShippedBroker) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(client_id: str, user: str, password: str) -> Client:
        client = Client(broker, client_id, user, password)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _credentials() -> tuple[tuple[str, str], tuple[str, str]]:
    """(cloud user, password), (gateway user, password), as deploy/*.toml have them."""
    edge = load_config(DEPLOY / "edge.toml")
    cloud = load_settings(DEPLOY / "cloud.toml")
    assert cloud.mqtt.username
    assert cloud.mqtt.password
    assert edge.broker.username
    assert edge.broker.password
    return (
        (cloud.mqtt.username, cloud.mqtt.password.get_secret_value()),
        (edge.broker.username, edge.broker.password.get_secret_value()),
    )


def test_broker_refuses_anonymous_and_wrong_passwords(
    broker: ShippedBroker, connect: Callable[..., Client]
) -> None:
    assert mqtt_connack_code(broker.host, broker.port) == 5  # not authorised
    (_, _), (gateway, _) = _credentials()
    assert connect("gw-wrong", gateway, "not-the-password").reason.is_failure


def test_the_demo_credentials_log_in(connect: Callable[..., Client]) -> None:
    (cloud, cloud_pw), (gateway, gateway_pw) = _credentials()
    assert not connect("cloud-ingest-1", cloud, cloud_pw).reason.is_failure
    assert not connect(gateway, gateway, gateway_pw).reason.is_failure


def test_a_gateway_publishes_only_its_own_edge_to_cloud_topics(
    connect: Callable[..., Client],
) -> None:
    (cloud_user, cloud_pw), (gw, gw_pw) = _credentials()
    edge = load_config(DEPLOY / "edge.toml")
    site = edge.site
    cloud = connect("cloud-ingest-1", cloud_user, cloud_pw)
    cloud.subscribe("#")  # the cloud may subscribe to everything

    denied = [
        SCHEME.topic(site, "gw-02", Channel.TELEMETRY),  # another gateway
        SCHEME.topic(site, "gw-02", Channel.BIRTH),
        SCHEME.topic(site, "gw-02", Channel.STATE),
        SCHEME.topic(site, gw, Channel.ACK),  # cloud -> edge channels, even its own
        SCHEME.topic(site, gw, Channel.CMD),
        SCHEME.alert_topic(site, gw, "a1"),
        "flightdeck/v1/_workers/ingest/stored",  # the cloud workers' peer reports
        "other/tree",
        # its own gateway id under another site's name: the cloud takes the site from the topic
        *(SCHEME.topic("other-site", gw, c) for c in sorted(EDGE_TO_CLOUD)),
    ]
    spoofer = connect("spoofer", gw, gw_pw)
    for topic in denied:
        assert spoofer.refused(topic), topic

    own = connect(gw, gw, gw_pw)
    allowed = [
        SCHEME.topic(site, gw, channel)
        for channel in (Channel.TELEMETRY, Channel.BIRTH, Channel.STATE, Channel.ALERT_ACKS)
    ]
    for topic in allowed:
        own.publish(topic, b"own")
    # Had a spoofed message been routed, it would sit in the cloud's queue ahead of these.
    assert [cloud.next_message() for _ in allowed] == [(t, b"own") for t in allowed]
    assert cloud.messages.empty()
    assert not own.disconnected.is_set()


def test_a_gateway_reads_only_its_own_cloud_to_edge_topics(
    connect: Callable[..., Client],
) -> None:
    (cloud_user, cloud_pw), (gw, gw_pw) = _credentials()
    site = load_config(DEPLOY / "edge.toml").site
    cloud = connect("cloud-ingest-1", cloud_user, cloud_pw)
    gateway = connect(gw, gw, gw_pw)
    # Mosquitto 2.0's acl_file grants the SUBSCRIBE and filters what it delivers.
    gateway.subscribe("#")

    not_for_it = [
        SCHEME.topic(site, "gw-02", Channel.ACK),
        SCHEME.topic(site, "gw-02", Channel.CMD),
        SCHEME.alert_topic(site, "gw-02", "a1"),
        SCHEME.topic(site, "gw-02", Channel.TELEMETRY),
        SCHEME.topic(site, gw, Channel.ALERT_ACKS),  # its own edge -> cloud traffic
        SCHEME.topic("other-site", gw, Channel.ACK),  # its id under another site
        SCHEME.alert_topic("other-site", gw, "a1"),
    ]
    for_it = [
        SCHEME.topic(site, gw, Channel.ACK),
        SCHEME.topic(site, gw, Channel.CMD),
        SCHEME.alert_topic(site, gw, "a1"),
        f"flightdeck/v1/{site}/{gw}/alert-index",
    ]
    for topic in not_for_it + for_it:  # the cloud publishes everywhere
        cloud.publish(topic, b"x")
    assert [gateway.next_message() for _ in for_it] == [(t, b"x") for t in for_it]
    assert gateway.messages.empty()
    assert not cloud.disconnected.is_set()


def test_every_gateway_in_the_password_file_has_an_acl_block_with_its_site() -> None:
    # patterns cannot fix the site level: each gateway needs its own block, all under one
    # site and its own id, and no pattern line may grant more
    users = [
        line.split(":", 1)[0]
        for line in (DEPLOY / "mosquitto.passwd").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    blocks: dict[str, list[str]] = {}
    current = None
    for line in (DEPLOY / "mosquitto.acl").read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        assert words[0] != "pattern", line
        if words[0] == "user":
            current = words[1]
            blocks[current] = []
        elif words[0] == "topic":
            assert current is not None
            blocks[current].append(words[-1])
    for user in users:
        if user == "cloud":
            continue
        topics = blocks[user]
        sites = {t.split("/")[2] for t in topics}
        assert len(sites) == 1, (user, sites)
        assert all(t.split("/")[3] == user for t in topics), (user, topics)
