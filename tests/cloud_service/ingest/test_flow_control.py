"""The inbox high-water mark works for every allowed ``mqtt.receive_maximum``, down to 1:
paho's thread stops reading the socket at the mark and resumes once the collector has taken
enough (for 1: once the inbox is empty), instead of waiting forever."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import msgspec
import paho.mqtt.client as mqtt
import pytest

from cloud_service.app import build_app
from cloud_service.settings import CloudSettings, load_settings
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import Ack, Reading, TelemetryBatch
from shared.topics import Channel, TopicScheme
from tests.integration.ingest_support import until

SCHEME = TopicScheme()


def settings_for(
    tmp_path: Path,
    receive_maximum: int,
    *,
    mosquitto: MosquittoServer | None = None,
    influxd: InfluxServer | None = None,
    unique_name: Callable[[str], str] | None = None,
) -> CloudSettings:
    name = unique_name or (lambda p: p + "x")
    mqtt_section: dict[str, object] = {
        "receive_maximum": receive_maximum,
        "client_id": name("cloud"),
        "share_group": name("grp"),
    }
    if mosquitto is not None:
        mqtt_section |= {"host": mosquitto.host, "port": mosquitto.port}
    return load_settings(
        None,
        mqtt=mqtt_section,
        influx={"url": influxd.url if influxd else "http://127.0.0.1:9", "database": name("db")},
        metadata={"url": f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"},
        ingest={"max_age_s": 0.02, "max_points": 1, "peer_reports": False},
        api={"port": 0},
    )


@pytest.mark.parametrize("receive_maximum", [1, 2, 3, 4])
async def test_pahos_thread_resumes_once_the_collector_takes_enough(
    tmp_path: Path, receive_maximum: int
) -> None:
    """paho's callback, run on a thread of its own as paho runs it, blocks at the mark and
    returns once the collector has taken the inbox below the low-water mark (half the mark,
    at least 1); nothing is contacted."""
    app = build_app(settings_for(tmp_path, receive_maximum))
    worker = app.ingest
    worker._loop = asyncio.get_running_loop()
    topic = SCHEME.topic("s1", "gw1", Channel.STATE)

    def deliver(mid: int) -> threading.Thread:
        msg = SimpleNamespace(topic=topic, payload=b"", mid=mid, qos=1)
        thread = threading.Thread(target=worker._on_message, args=(None, None, msg), daemon=True)
        thread.start()
        return thread

    for mid in range(1, receive_maximum):  # below the mark: paho's thread goes on at once
        t = deliver(mid)
        t.join(2)
        assert not t.is_alive()
    blocked = deliver(receive_maximum)  # at the mark: it stops reading the socket
    await until(lambda: len(worker._inbox) == receive_maximum, 5, "the message in the inbox")
    await asyncio.sleep(0.3)
    assert blocked.is_alive()
    resume_at = max(1, receive_maximum // 2)  # the low-water mark: resume below it
    try:
        while len(worker._inbox) >= resume_at:
            await asyncio.sleep(0.05)
            assert blocked.is_alive()  # still at or above the low-water mark: still held
            worker._take()
        blocked.join(5)
        assert not blocked.is_alive(), "paho's thread still blocked below the low-water mark"
        assert len(worker._inbox) == resume_at - 1
    finally:
        worker._closing = True
        worker._room.set()
        blocked.join(2)
        await app.metadata.aclose()
        await app.store.aclose()


@pytest.mark.integration
async def test_receive_maximum_1_ingests_a_stream_through_the_real_broker(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gw = unique_name("site"), unique_name("gw")
    settings = settings_for(
        tmp_path, 1, mosquitto=mosquitto, influxd=influxd, unique_name=unique_name
    )
    acks: list[int] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, m: acks.append(
        msgspec.json.decode(m.payload, type=Ack).seq if m.payload else 0
    )
    client.connect(mosquitto.host, mosquitto.port)
    client.subscribe(SCHEME.topic(site, gw, Channel.ACK), 1)
    client.loop_start()
    t = time.time_ns() // 1_000_000 - 10_000
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        await app.ingest.wait_connected()
        await asyncio.sleep(0.2)  # subscriptions granted
        topic = SCHEME.topic(site, gw, Channel.TELEMETRY)
        infos = [
            client.publish(
                topic,
                encode(
                    TelemetryBatch(
                        gateway=gw, boot="b1", seq=seq, readings=[Reading("sig", t + seq, 1.0)]
                    )
                ),
                qos=1,
            )
            for seq in range(1, 31)
        ]
        for info in infos:
            info.wait_for_publish(10)
        await until(lambda: max(acks, default=0) >= 30, 30, "the ack of seq 30")
        assert app.ingest.acked == 30
        assert app.ingest.persister.points_written == 30
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        client.publish(SCHEME.topic(site, gw, Channel.ACK), b"", qos=1, retain=True)
        client.disconnect()
        client.loop_stop()
