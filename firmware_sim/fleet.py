"""A fleet of emulated gateways in one process, publishing telemetry over MQTT for load tests.

Thousands of gateways x a hundred signals is far beyond what the event-driven plant model is
for, so the fleet draws its values from a vectorised model (:class:`FleetValues`: stock levels
that are consumed and refilled, sensors that wobble around a set point) and spends its time
where a load test needs it: building contract messages and pushing them through paho.

All connections run on one thread with one selector (no paho thread per client): each
connection keeps at most ``window`` QoS 1 messages unacknowledged (paho would refuse more than
~65k anyway, field notes), which is also the back-pressure: when the broker is slower, the fleet
publishes slower instead of piling up memory. ``period_s = 0`` publishes as fast as the
broker acknowledges (the benchmark); otherwise each gateway publishes every ``period_s``,
gateways spread evenly over the period. Each gateway announces itself with a retained birth
first (and, with one connection per gateway, has the usual offline will).
"""

from __future__ import annotations

import logging
import selectors
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from firmware_sim.errors import MqttDeviceError, PlantParameterError
from shared.codec import encode
from shared.messages import (
    Birth,
    GatewayState,
    Quality,
    Reading,
    SignalKind,
    SignalSpec,
    State,
    TelemetryBatch,
)
from shared.topics import DEFAULT_PREFIX, Channel, TopicScheme

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT_S: Final = 30.0
_GOOD: Final = Quality.GOOD


@dataclass(frozen=True, slots=True)
class FleetConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    gateways: int = 1000
    signals: int = 100
    period_s: float = 1.0  # 0: as fast as the broker acknowledges
    readings_per_message: int = 100  # a gateway's readings are split into messages of this size
    connections: int = 0  # 0: one per gateway
    window: int = 20  # QoS 1 messages in flight per connection
    qos: int = 1
    site: str = "fleet"
    prefix: str = DEFAULT_PREFIX
    seed: int = 0
    username: str | None = None
    password: str | None = None

    def __post_init__(self) -> None:
        checks = {
            "gateways": 1 <= self.gateways <= 100_000,
            "signals": 1 <= self.signals <= 10_000,
            "period_s": self.period_s >= 0,
            "readings_per_message": 1 <= self.readings_per_message <= 10_000,
            "connections": 0 <= self.connections <= self.gateways,
            "window": 1 <= self.window <= 65_000,
            "qos": self.qos in {0, 1},
        }
        for name, ok in checks.items():
            if not ok:
                raise PlantParameterError(name, getattr(self, name), "out of range")

    @property
    def connection_count(self) -> int:
        return self.connections or self.gateways


@dataclass(slots=True)
class FleetStats:
    gateways: int = 0
    connections: int = 0
    elapsed_s: float = 0.0
    messages_sent: int = 0
    messages_acked: int = 0
    readings_sent: int = 0
    readings_acked: int = 0
    refused: int = 0  # publishes paho refused (should stay 0: the window prevents it)
    disconnects: int = 0

    @property
    def messages_per_s(self) -> float:
        return self.messages_acked / self.elapsed_s if self.elapsed_s else 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings_acked / self.elapsed_s if self.elapsed_s else 0.0


class FleetValues:
    """Values of every gateway x signal, one vectorised step per tick (pure, seeded)."""

    def __init__(self, gateways: int, signals: int, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        shape = (gateways, signals)
        self.stock_like = (np.arange(signals) % 2 == 0)[None, :].repeat(gateways, axis=0)
        self._level = self._rng.uniform(200, 1000, shape)
        self._use = self._rng.uniform(0.05, 2.0, shape)
        self._set_point = self._rng.uniform(20, 80, shape)

    def tick(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        consumed = self._rng.poisson(self._use).astype(np.float64)
        self._level = np.maximum(self._level - consumed, 0)
        refill = self._level < 100
        self._level[refill] += 900
        noise = self._rng.normal(0.0, 0.5, self._level.shape)
        values = np.where(self.stock_like, self._level, self._set_point) + noise
        return np.asarray(np.round(np.maximum(values, 0), 1), dtype=np.float64)


@dataclass(slots=True)
class _Conn:
    client: mqtt.Client
    gateways: list[int]
    inflight: int = 0
    connected: bool = False
    sizes: dict[int, int] = field(default_factory=dict)  # mid -> readings


class Fleet:
    def __init__(self, config: FleetConfig) -> None:
        self.config = config
        self.stats = FleetStats(gateways=config.gateways, connections=config.connection_count)
        self._topics = TopicScheme(config.prefix)
        self._gateway_ids = [f"gw{g:05d}" for g in range(config.gateways)]
        self._signal_ids = [f"s{j:04d}" for j in range(config.signals)]
        self._boot = f"b{int(time.time()):x}"
        self._seq = [0] * config.gateways
        self._values = FleetValues(config.gateways, config.signals, config.seed)
        self._sel = selectors.DefaultSelector()
        self._conns: list[_Conn] = []
        self._writers: set[_Conn] = set()
        self._closing = False
        self._next_misc = self._next_report = 0.0

    # --- connections ---------------------------------------------------------------------
    def _client(self, index: int, gateways: list[int]) -> _Conn:
        cfg = self.config
        per_gateway = cfg.connection_count == cfg.gateways
        client_id = self._gateway_ids[gateways[0]] if per_gateway else f"fleet-{index:05d}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        client.max_inflight_messages_set(cfg.window)
        client.max_queued_messages_set(0)  # unbounded: the window bounds it
        conn = _Conn(client, gateways)
        if per_gateway:
            will = State(state=GatewayState.OFFLINE, boot=self._boot, ts=_now_ms())
            client.will_set(
                self._topic(gateways[0], Channel.STATE), encode(will), qos=1, retain=True
            )
        client.on_connect = lambda *a: setattr(conn, "connected", True)
        client.on_disconnect = lambda *a: self._on_disconnect(conn)
        client.on_publish = lambda _c, _u, mid, *_: self._on_publish(conn, mid)
        return conn

    def _on_disconnect(self, conn: _Conn) -> None:
        if conn.connected and not self._closing:
            self.stats.disconnects += 1
        conn.connected = False

    def _on_publish(self, conn: _Conn, mid: int) -> None:
        conn.inflight -= 1
        readings = conn.sizes.pop(mid, 0)
        if readings:
            self.stats.messages_acked += 1
            self.stats.readings_acked += readings

    def _topic(self, g: int, channel: Channel) -> str:
        return self._topics.topic(self.config.site, self._gateway_ids[g], channel)

    def connect(self) -> None:
        """Open every connection and announce every gateway (birth and online, retained)."""
        cfg = self.config
        n = cfg.connection_count
        groups: list[list[int]] = [[] for _ in range(n)]
        for g in range(cfg.gateways):
            groups[g % n].append(g)
        for i, gateways in enumerate(groups):
            conn = self._client(i, gateways)
            try:
                conn.client.connect(cfg.host, cfg.port, keepalive=60)
            except OSError as exc:
                raise MqttDeviceError(cfg.host, cfg.port, f"connection {i}: {exc}") from None
            sock = conn.client.socket()
            assert sock is not None
            self._sel.register(sock, selectors.EVENT_READ, conn)
            self._conns.append(conn)
        deadline = time.monotonic() + _CONNECT_TIMEOUT_S
        while not all(c.connected for c in self._conns):
            if time.monotonic() > deadline:
                raise MqttDeviceError(cfg.host, cfg.port, "not every connection was accepted")
            self._io(0.05)
        for conn in self._conns:
            for g in conn.gateways:
                self._announce(conn, g)
        self._drain()

    def _announce(self, conn: _Conn, g: int) -> None:
        now = _now_ms()
        signals = [
            SignalSpec(
                id=sid,
                kind=SignalKind.STOCK_LEVEL if j % 2 == 0 else SignalKind.SENSOR,
                period_s=self.config.period_s or 1.0,
            )
            for j, sid in enumerate(self._signal_ids)
        ]
        birth = Birth(
            gateway=self._gateway_ids[g],
            site=self.config.site,
            boot=self._boot,
            agent_version="firmware-sim-fleet",
            config_hash="fleet",
            started_ms=now,
            signals=signals,
        )
        online = State(state=GatewayState.ONLINE, boot=self._boot, ts=now)
        for channel, message in ((Channel.BIRTH, birth), (Channel.STATE, online)):
            self._wait_window(conn)
            info = conn.client.publish(self._topic(g, channel), encode(message), qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                conn.inflight += 1
            if conn.client.want_write():
                self._writers.add(conn)

    # --- the loop ------------------------------------------------------------------------
    def _io(self, timeout: float) -> None:
        # paho writes a packet at once when it can (no network thread); only connections whose
        # socket buffer was full have bytes left, so only those are looked at here.
        for conn in list(self._writers):
            conn.client.loop_write()
            if not conn.client.want_write():
                self._writers.discard(conn)
        for key, _ in self._sel.select(timeout):
            conn = key.data
            conn.client.loop_read()

    def _wait_window(self, conn: _Conn) -> None:
        while conn.inflight >= self.config.window and conn.connected:
            self._io(0.01)

    def _drain(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while any(c.inflight > 0 and c.connected for c in self._conns):
            if time.monotonic() > deadline:
                break
            self._io(0.01)

    def _publish(self, conn: _Conn, g: int, row: list[float], lo: int, ts: int) -> None:
        """One message: readings ``lo`` .. ``lo + readings_per_message`` of gateway ``g``."""
        cfg = self.config
        ids = self._signal_ids
        hi = min(lo + cfg.readings_per_message, len(row))
        readings = [Reading(ids[j], ts, row[j], _GOOD) for j in range(lo, hi)]
        while conn.inflight >= cfg.window and conn.connected:
            self._io(0.001)
        self._seq[g] += 1
        batch = TelemetryBatch(
            gateway=self._gateway_ids[g],
            boot=self._boot,
            seq=self._seq[g],
            first_unacked=self._seq[g],
            readings=readings,
        )
        info = conn.client.publish(self._topic(g, Channel.TELEMETRY), encode(batch), qos=cfg.qos)
        if conn.client.want_write():
            self._writers.add(conn)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.stats.refused += 1
            return
        self.stats.messages_sent += 1
        self.stats.readings_sent += len(readings)
        if cfg.qos == 0:
            self.stats.messages_acked += 1
            self.stats.readings_acked += len(readings)
        else:
            conn.inflight += 1
            conn.sizes[info.mid] = len(readings)

    def _housekeeping(self, started: float, progress: Callable[[FleetStats], None] | None) -> None:
        now = time.monotonic()
        if now >= self._next_misc:  # keepalive pings
            for conn in self._conns:
                conn.client.loop_misc()
            self._next_misc = now + 1.0
        if progress is not None and now >= self._next_report:
            self.stats.elapsed_s = now - started
            progress(self.stats)
            self._next_report = now + 1.0

    def run(
        self,
        duration_s: float,
        *,
        stop: threading.Event | None = None,
        progress: Callable[[FleetStats], None] | None = None,
    ) -> FleetStats:
        """Publish for ``duration_s`` seconds (after connecting); returns the statistics.

        ``elapsed_s`` runs until the last message was acknowledged (or 10 s after the end).
        """
        if not self._conns:
            self.connect()
        cfg = self.config
        by_gateway = {g: conn for conn in self._conns for g in conn.gateways}
        owner = [by_gateway[g] for g in range(cfg.gateways)]
        chunks = range(0, cfg.signals, cfg.readings_per_message)
        started = time.monotonic()
        end = started + duration_s
        self._next_misc = self._next_report = started + 1.0
        tick = 0
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            rows: list[list[float]] = self._values.tick().tolist()
            if cfg.period_s:  # each gateway at its own time in the period, all its messages
                spacing = cfg.period_s / cfg.gateways
                tick_start = started + tick * cfg.period_s
                for g in range(cfg.gateways):
                    while (wait := tick_start + g * spacing - time.monotonic()) > 0:
                        self._io(min(wait, 0.05))
                    if time.monotonic() >= end:
                        break
                    for lo in chunks:
                        self._publish(owner[g], g, rows[g], lo, _now_ms())
                    self._housekeeping(started, progress)
            else:  # as fast as acknowledged: message k of every gateway, then k + 1, which
                ts = _now_ms()  # spreads the in-flight window over every connection
                for lo in chunks:
                    for g in range(cfg.gateways):
                        self._publish(owner[g], g, rows[g], lo, ts)
                        if g % 64 == 0:
                            self._housekeeping(started, progress)
                    if time.monotonic() >= end:
                        break
            tick += 1
            self._io(0)
        self._drain()
        self.stats.elapsed_s = time.monotonic() - started
        return self.stats

    def close(self) -> None:
        """Announce offline (one connection per gateway), then disconnect every connection."""
        self._closing = True
        if self.config.connection_count == self.config.gateways:
            for conn in self._conns:
                if conn.connected:
                    g = conn.gateways[0]
                    offline = State(state=GatewayState.OFFLINE, boot=self._boot, ts=_now_ms())
                    topic = self._topic(g, Channel.STATE)
                    conn.client.publish(topic, encode(offline), qos=1, retain=True)
                    conn.inflight += 1
        self._drain(2.0)
        for conn in self._conns:
            sock = conn.client.socket()
            if sock is not None:
                self._sel.unregister(sock)
            conn.client.disconnect()
        self._sel.close()
        self._conns.clear()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
