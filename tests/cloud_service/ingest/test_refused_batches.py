"""A telemetry batch refused as a whole is dead-lettered *and* settles its seq, so the
end-to-end ack of its gateway boot moves past it instead of stalling below it forever.

The pure core first (no I/O), then the whole path through real Mosquitto, influxd and SQLite.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
import pytest

from cloud_service.app import CloudApp, build_app
from cloud_service.ingest.pipeline import Inbound, IngestCore, Prepared
from cloud_service.settings import CloudSettings, load_settings
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import Limits, encode
from shared.errors import Reason
from shared.messages import Ack, Reading, TelemetryBatch
from shared.topics import Channel, TopicScheme

NOW = 1_790_000_000_000
SCHEME = TopicScheme()
TOPIC = SCHEME.topic("s1", "gw1", Channel.TELEMETRY)


def batch(seq: int, n: int = 1, *, gateway: str = "gw1", boot: str = "b1", **kw: object) -> bytes:
    readings = [Reading("sig", NOW - i, 1.0) for i in range(n)]
    return encode(TelemetryBatch(gateway=gateway, boot=boot, seq=seq, readings=readings, **kw))  # type: ignore[arg-type]


def edit(payload: bytes, **fields: object) -> bytes:
    return json.dumps({**json.loads(payload), **fields}).encode()


def run(core: IngestCore, payloads: list[bytes]) -> tuple[Prepared, list[int]]:
    prepared = core.prepare([Inbound(TOPIC, p, NOW, i) for i, p in enumerate(payloads)])
    outcome = core.stored(prepared, NOW)
    return prepared, [ack.seq for _, ack in outcome.acks]


REFUSED = {
    "too_many_readings": (Limits(max_readings=5), batch(2, n=6)),
    "too_large": (Limits(max_payload_bytes=1024), batch(2, n=80)),
    "schema_historical": (Limits(), edit(batch(2), historical=1)),
    "schema_clock_step": (Limits(), edit(batch(2), clock_step_ms="1")),
    "schema_first_unacked": (Limits(), edit(batch(2), first_unacked=-1)),
    "schema_first_unacked_nan": (
        Limits(),
        batch(2, first_unacked=1).replace(b'"first_unacked":1', b'"first_unacked":NaN'),
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_whole_refused_batch_settles_its_seq_and_keeps_its_dead_letter(case: str) -> None:
    limits, refused = REFUSED[case]
    core = IngestCore(SCHEME, limits)
    prepared, acks = run(core, [batch(1), refused, batch(3), batch(4)])
    (letter,) = prepared.dead
    assert letter.reason in {Reason.TOO_MANY_READINGS, Reason.TOO_LARGE, Reason.SCHEMA}
    assert letter.raw == refused  # nothing lost: the raw bytes and the reason are kept
    assert (letter.topic, letter.gateway) == (TOPIC, "gw1")
    assert acks == [4]
    assert core.tracker.ack_for("gw1", "b1") == 4
    ref = next(b for b in prepared.batches if b.seq == 2)
    assert (ref.readings, ref.refused, ref.latest) == (0, True, {})
    assert prepared.lines
    assert len(prepared.tokens) == 4


def test_a_refused_batch_its_dead_letter_would_cut_short_settles_nothing() -> None:
    """The dead letter keeps ``settle_max_bytes`` of a payload: a longer one keeps its seq
    open, so the gateway keeps the only whole copy (a stall, never a loss)."""
    refused = batch(2, n=80)
    core = IngestCore(SCHEME, Limits(max_payload_bytes=1024), settle_max_bytes=len(refused) - 1)
    prepared, acks = run(core, [batch(1), refused, batch(3)])
    assert [d.reason for d in prepared.dead] == [Reason.TOO_LARGE]
    assert acks == [1]
    assert core.tracker.ack_for("gw1", "b1") == 1
    fits = IngestCore(SCHEME, Limits(max_payload_bytes=1024), settle_max_bytes=len(refused))
    assert run(fits, [batch(1), refused, batch(3)])[1] == [3]


def test_a_refused_batch_resent_alone_moves_the_ack() -> None:
    core = IngestCore(SCHEME, Limits(max_readings=5))
    assert run(core, [batch(1)])[1] == [1]
    assert run(core, [batch(3)])[1] == [1]  # seq 2 still missing
    prepared, acks = run(core, [batch(2, n=6)])
    assert [d.reason for d in prepared.dead] == [Reason.TOO_MANY_READINGS]
    assert acks == [3]


def test_first_unacked_of_a_refused_batch_is_honoured() -> None:
    """A restarted cloud trusts ``first_unacked`` of a refused batch as of any other."""
    core = IngestCore(SCHEME, Limits(max_readings=5))
    _, acks = run(core, [batch(7, n=6, first_unacked=7)])
    assert acks == [7]


@pytest.mark.parametrize(
    "payload",
    [
        batch(2, n=6, gateway="gw2"),  # topic_mismatch: another gateway's batch
        edit(batch(2, n=6), seq=-1),
        edit(batch(2, n=6), seq="2"),
        edit(batch(2, n=6), boot="b 1"),
        edit(batch(2, n=6), gateway=None),
        b"{not json",
        b"[1, 2]",
        b"",
    ],
)
def test_nothing_is_settled_without_a_valid_identity_on_its_own_topic(payload: bytes) -> None:
    core = IngestCore(SCHEME, Limits(max_readings=5))
    prepared, acks = run(core, [batch(1), payload, batch(3)])
    assert len(prepared.dead) == 1
    assert [b.seq for b in prepared.batches] == [1, 3]
    assert acks == [1]


# -- through the real broker, influxd and the metadata store -----------------------------


@asynccontextmanager
async def running(settings: CloudSettings) -> AsyncIterator[CloudApp]:
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await app.ingest.wait_connected()
        await asyncio.sleep(0.2)  # subscriptions granted
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


class Gateway:
    """A gateway-like MQTT 5 publisher that records the end-to-end acks it receives."""

    def __init__(self, server: MosquittoServer, site: str, gateway: str) -> None:
        self.site, self.gateway = site, gateway
        self.acks: list[int] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(server.host, server.port)
        self.client.subscribe(SCHEME.topic(site, gateway, Channel.ACK), 1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload:
            self.acks.append(msgspec.json.decode(msg.payload, type=Ack).seq)

    def send(self, payload: bytes) -> None:
        topic = SCHEME.topic(self.site, self.gateway, Channel.TELEMETRY)
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    async def acked(self, seq: int, within_s: float = 30) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while max(self.acks, default=0) < seq:
            assert loop.time() < deadline, f"no ack of seq {seq}: got {self.acks}"
            await asyncio.sleep(0.05)

    def close(self) -> None:
        topic = SCHEME.topic(self.site, self.gateway, Channel.ACK)
        self.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.integration
async def test_the_gateway_gets_its_ack_past_a_refused_batch(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gw = unique_name("site"), unique_name("gw")
    settings = load_settings(
        None,
        mqtt={
            "host": mosquitto.host,
            "port": mosquitto.port,
            "client_id": unique_name("cloud"),
            "share_group": unique_name("grp"),
        },
        influx={"url": influxd.url, "database": unique_name("db")},
        metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
        ingest={"max_age_s": 0.05, "max_readings": 5, "peer_reports": False},
        api={"port": 0},
    )
    t = time.time_ns() // 1_000_000

    def payload(seq: int, n: int) -> bytes:
        readings = [Reading("sig", t - 1000 + seq * 10 + i, 1.0) for i in range(n)]
        return encode(TelemetryBatch(gateway=gw, boot="b1", seq=seq, readings=readings))

    gateway = Gateway(mosquitto, site, gw)
    try:
        async with running(settings) as app:
            gateway.send(payload(1, 6))  # too many readings: refused as a whole
            await gateway.acked(1)
            (letter,) = await app.dead_letters.recent()
            assert (letter.reason, letter.raw) == ("too_many_readings", payload(1, 6))
            # no sign of life from a batch of which nothing was stored
            assert [g.last_seen_ms for g in app.ingest.health.gateways()] == []
            for seq, n in [(2, 2), (3, 6), (4, 2)]:
                gateway.send(payload(seq, n))
            await gateway.acked(4)
            assert await app.dead_letters.count_by_reason() == {"too_many_readings": 2}
            (seen,) = app.ingest.health.gateways()
            assert seen.last_seen_ms is not None
    finally:
        gateway.close()
