"""Smart-sensor firmware mode: devices that publish straight to MQTT in the Flightdeck contract.

Each ``[[mqtt_devices]]`` entry of a scenario is a small gateway of its own (gateway id =
client id) that publishes, as the edge agent would but without a spool:

* on connect: its retained ``Birth`` (signal catalog) and ``State`` *online*; its will is the
  retained ``State`` *offline*;
* every ``publish_s`` real seconds: a ``TelemetryBatch`` (QoS 1) with every sample its signals
  took since the last one, timestamps in simulated time, seq +1 per batch from 1 per boot,
  ``first_unacked`` = its own seq (it keeps nothing to resend).

Faults act as on real hardware: during ``gateway_offline`` the device loses power: its TCP
connection drops without a DISCONNECT (so the broker publishes the will), the samples of the
window (and any not yet published) are lost, and it comes back with a new boot id, seq 1 and
a new birth. During ``clock_jump`` its timestamps are off by the offset, and the batch that
first carries the jump reports it (signed) in ``clock_step_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from firmware_sim.core.sensors import Sample
from firmware_sim.errors import MqttDeviceError
from firmware_sim.runtime import Simulation
from firmware_sim.scenario.model import MqttDeviceSpec
from shared.codec import encode, make_reading
from shared.messages import Birth, GatewayState, Reading, SignalSpec, State, TelemetryBatch
from shared.topics import DEFAULT_PREFIX, Channel, TopicScheme

log = logging.getLogger(__name__)

AGENT_VERSION: Final = "firmware-sim-1"
MAX_BATCH: Final = 5000
MAX_BUFFER: Final = 100_000  # readings a device holds while it cannot publish
_QOS: Final = 1


@dataclass(slots=True)
class DeviceState:
    """The pure part of one device: what it buffered and how it numbers batches."""

    spec: MqttDeviceSpec
    boot: str = field(default_factory=lambda: f"b{secrets.token_hex(6)}")
    seq: int = 0
    buffer: deque[Reading] = field(default_factory=lambda: deque(maxlen=MAX_BUFFER))
    lost: int = 0  # samples lost while offline
    offline: bool = False
    offset_ms: int = 0
    step_ms: int = 0  # largest clock step seen since the last batch
    reboots: int = 0

    def take(self, sample: Sample, *, offline: bool, offset_ms: int) -> None:
        if offline:
            if not self.offline:  # power loss: what was buffered in RAM is gone too
                self.lost += len(self.buffer)
                self.buffer.clear()
                self.offline = True
            self.lost += 1
            return
        if self.offline:  # power is back: a new boot
            self.offline = False
            self.boot = f"b{secrets.token_hex(6)}"
            self.seq = 0
            self.reboots += 1
        if offset_ms != self.offset_ms:
            step = offset_ms - self.offset_ms  # signed: a clock set back is negative
            if abs(step) > abs(self.step_ms):
                self.step_ms = step
            self.offset_ms = offset_ms
        if len(self.buffer) == MAX_BUFFER:  # the broker has been away long: oldest go first
            self.lost += 1
        self.buffer.append(
            make_reading(sample.signal, sample.ts + offset_ms, sample.value, sample.quality)
        )

    def batches(self) -> list[TelemetryBatch]:
        out = []
        while self.buffer:
            chunk = [self.buffer.popleft() for _ in range(min(MAX_BATCH, len(self.buffer)))]
            self.seq += 1
            out.append(
                TelemetryBatch(
                    gateway=self.spec.gateway,
                    boot=self.boot,
                    seq=self.seq,
                    first_unacked=self.seq,
                    clock_step_ms=self.step_ms,
                    readings=chunk,
                )
            )
            self.step_ms = 0
        return out


class SmartSensors:
    """All the scenario's MQTT devices, publishing to one broker."""

    def __init__(
        self,
        sim: Simulation,
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        prefix: str = DEFAULT_PREFIX,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.sim = sim
        self.host = host
        self.port = port
        self.topics = TopicScheme(prefix)
        self._auth = (username, password)
        self.devices = {d.gateway: DeviceState(d) for d in sim.scenario.mqtt_devices}
        self._wanted = {s: d for d in self.devices.values() for s in d.spec.signals}
        self._clients: dict[str, mqtt.Client] = {}
        self._boots: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self.published = 0  # batches handed to paho
        self.refused = 0  # batches paho refused (queue full)

    def _on_sample(self, sample: Sample) -> None:
        device = self._wanted.get(sample.signal)
        if device is None:
            return
        world = self.sim.world
        gateway = device.spec.gateway
        device.take(
            sample, offline=world.gateway_offline(gateway), offset_ms=world.clock_offset_ms(gateway)
        )

    def _topic(self, gateway: str, channel: Channel) -> str:
        return self.topics.topic(self.sim.scenario.site, gateway, channel)

    def _connect(self, device: DeviceState) -> mqtt.Client:
        gateway = device.spec.gateway
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=gateway, protocol=mqtt.MQTTv311)
        if self._auth[0] is not None:
            client.username_pw_set(self._auth[0], self._auth[1])
        now = self.sim.world.t
        will = State(state=GatewayState.OFFLINE, boot=device.boot, ts=now)
        client.will_set(self._topic(gateway, Channel.STATE), encode(will), qos=_QOS, retain=True)
        client.max_queued_messages_set(1000)
        connects = [0]

        def on_connect(*_: object) -> None:  # paho's thread; after a broker restart, re-announce
            connects[0] += 1
            if connects[0] > 1:
                self._announce(client, device)

        client.on_connect = on_connect
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise MqttDeviceError(self.host, self.port, f"{gateway}: {exc}") from None
        client.loop_start()
        self._announce(client, device)  # queued now, so it goes out before any telemetry
        self._boots[gateway] = device.boot
        return client

    def _announce(self, client: mqtt.Client, device: DeviceState) -> None:
        gateway, now = device.spec.gateway, self.sim.world.t
        birth = Birth(
            gateway=gateway,
            site=self.sim.scenario.site,
            boot=device.boot,
            agent_version=AGENT_VERSION,
            config_hash=self.sim.scenario.name[:200],
            started_ms=now,
            signals=[self._catalog(name) for name in device.spec.signals],
        )
        client.publish(self._topic(gateway, Channel.BIRTH), encode(birth), qos=_QOS, retain=True)
        online = State(state=GatewayState.ONLINE, boot=device.boot, ts=now)
        client.publish(self._topic(gateway, Channel.STATE), encode(online), qos=_QOS, retain=True)

    def _catalog(self, signal: str) -> SignalSpec:
        spec = self.sim.scenario.signal(signal)
        assert spec is not None  # checked when the scenario was loaded
        return SignalSpec(
            id=spec.id,
            kind=spec.kind,
            unit=spec.unit,
            sku=spec.sku,
            location=spec.warehouse,
            line=spec.line,
            period_s=self.sim.world.period_ms(spec.id) / 1000,
            description=spec.description,
        )

    @staticmethod
    def _power_loss(client: mqtt.Client) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes the will."""
        client.loop_stop()
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def flush(self) -> None:
        """Bring the world to now and publish what each device has (the loop does this)."""
        self.sim.sync()
        for gateway, device in self.devices.items():
            client = self._clients.get(gateway)
            if device.offline:
                if client is not None:
                    self._power_loss(self._clients.pop(gateway))
                continue
            if client is None or self._boots.get(gateway) != device.boot:
                if client is not None:
                    self._power_loss(client)
                client = self._clients[gateway] = self._connect(device)
            for batch in device.batches():
                info = client.publish(
                    self._topic(gateway, Channel.TELEMETRY), encode(batch), qos=_QOS
                )
                if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
                    self.refused += 1
                else:
                    self.published += 1

    async def start(self) -> None:
        if self._task is not None:
            return
        self.sim.world.add_listener(self._on_sample)
        self.flush()  # connect now: a broker that is not there fails the start
        self._task = asyncio.create_task(self._loop(), name="smart-sensors")

    async def _loop(self) -> None:
        interval = min((d.spec.publish_s for d in self.devices.values()), default=1.0)
        while True:
            await asyncio.sleep(interval)
            try:
                self.flush()
            except MqttDeviceError as exc:
                log.warning("smart sensors: %s", exc)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.sim.world.remove_listener(self._on_sample)
        for gateway, client in self._clients.items():
            device = self.devices[gateway]
            offline = State(state=GatewayState.OFFLINE, boot=device.boot, ts=self.sim.world.t)
            info = client.publish(
                self._topic(gateway, Channel.STATE), encode(offline), qos=_QOS, retain=True
            )
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(2.0)
            client.disconnect()
            client.loop_stop()
        self._clients.clear()
