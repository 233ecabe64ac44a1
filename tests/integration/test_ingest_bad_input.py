"""Bad input through the real broker: every class dead-lettered with its reason and raw bytes,
while the service keeps storing and acking good data.

Real Mosquitto, influxd and PostgreSQL (the metadata store holding the dead letters).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from ingest_support import (
    Publisher,
    batch,
    birth,
    cloud_settings,
    count_points,
    influx_store,
    nan_batch,
    now_ms,
    pg_database,
    stored_times,
    until,
)

from cloud_service.app import CloudApp, build_app
from cloud_service.settings import CloudSettings
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch
from shared.topics import Channel

pytestmark = pytest.mark.integration


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


async def test_every_malformed_class_is_dead_lettered_and_ingest_goes_on(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    site, gw = unique_name("site"), unique_name("gw")
    async with pg_database() as url:
        settings = cloud_settings(mosquitto, influxd, unique_name, url, metrics={"port": 0})
        pub = Publisher(mosquitto, site, gw)
        try:
            async with running(settings) as app:
                pub.publish_all([birth(site, gw, ["s"])], pub.topic(Channel.BIRTH))
                good = json.loads(batch(gw, 1, 3))
                t = now_ms()
                cases: dict[str, tuple[str, bytes]] = {
                    "malformed": (pub.topic(), b"{not json"),
                    "schema": (pub.topic(), json.dumps({**good, "seq": "one"}).encode()),
                    "bad_id": (pub.topic(), json.dumps({**good, "boot": "b 1"}).encode()),
                    "topic_mismatch": (pub.topic(), batch("other-gw", 1, 1)),
                    "too_many_readings": (
                        pub.topic(),
                        json.dumps({**good, "readings": [["s", t, 1.0, 0]] * 10_001}).encode(),
                    ),
                    "bad_topic": (f"flightdeck/v1/{site}/g w/telemetry", batch("gw", 1, 1)),
                    # Our own limit (1 MiB); the test broker's message_size_limit is unset
                    # (Mosquitto's maximum), so the broker forwards it rather than dropping it.
                    "too_large": (pub.topic(), b" " * (1_048_576 + 10)),
                }
                readings = {  # one bad reading among good ones
                    "non_finite": ["s", t + 1, "x", 0],
                    "missing_value": ["s", t + 2, None, 0],
                    "ts_out_of_window": ["s", 1, 1.0, 0],
                }
                for reason, reading in readings.items():
                    doc = {**good, "seq": 2, "readings": [["s", t + 10, 1.0, 0], reading]}
                    payload = json.dumps(doc, separators=(",", ":")).encode()
                    if reason == "non_finite":
                        payload = payload.replace(b'"x"', b"Infinity")
                    cases[reason] = (pub.topic(), payload)
                for topic, payload in cases.values():
                    pub.publish(payload, topic)
                pub.publish_all([batch(gw, 1, 3)])

                letters = app.dead_letters
                await until(
                    lambda: _has_all(letters.count_by_reason(), set(cases)),
                    30,
                    f"a dead letter per class {set(cases)}",
                )
                counts = await letters.count_by_reason()
                assert counts == dict.fromkeys(cases, 1)
                for reason, (topic, payload) in cases.items():
                    (letter,) = await letters.recent(reason=reason)
                    assert letter.topic == topic
                    if reason in readings:
                        assert letter.index == 1
                        # the reading itself (re-encoded: whitespace may differ)
                        assert json.loads(letter.raw)[:2] == readings[reason][:2]
                    elif reason == "too_large":
                        assert letter.size == len(payload)
                        assert letter.truncated
                        assert payload.startswith(letter.raw)
                    else:
                        assert letter.raw == payload
                    sample = "flightdeck_dead_letters_total"
                    assert app.metrics.value(sample, reason=reason) == 1
                # Exposed over HTTP for Prometheus, and in the status.
                async with httpx.AsyncClient() as http:
                    page = (await http.get(f"http://127.0.0.1:{app.metrics_port}/metrics")).text
                for reason in cases:
                    assert f'flightdeck_dead_letters_total{{reason="{reason}"}} 1.0' in page
                assert app.status()["ingest"]["dead_letters"] == dict.fromkeys(cases, 1)
                # ... and the service went on: good readings stored and acked.
                await until(lambda: pub.highest_ack() >= 2, 30, "ack of seq 2")
                async with influx_store(influxd, settings.influx.database) as store:
                    # 3 from seq 1; the good reading of the three seq-2 batches is one point
                    assert await count_points(store, "stock_level", gw) == 3 + 1
        finally:
            pub.close()


async def test_bytes_that_are_not_utf8_are_dead_lettered_and_ingest_goes_on(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    # msgspec raises UnicodeDecodeError for these, which once escaped the decoder: ingest
    # crashed, and crashed again on every redelivery of the un-acked message
    site, gw = unique_name("site"), unique_name("gw")
    async with pg_database() as url:
        settings = cloud_settings(mosquitto, influxd, unique_name, url)
        pub = Publisher(mosquitto, site, gw)
        try:
            async with running(settings) as app:
                pub.publish_all([birth(site, gw, ["s"])], pub.topic(Channel.BIRTH))
                t = now_ms()
                one_bad = (
                    b'{"gateway":"%s","boot":"b1","seq":1,"readings":[["s",%d,1.0,0],'
                    b'["s\xff",%d,2.0,0]]}' % (gw.encode(), t, t + 1)
                )
                whole_bad = b'{"gateway":"%s","boot":"b\xff","seq":2,"readings":[]}' % gw.encode()
                pub.publish(one_bad)
                pub.publish(whole_bad)
                pub.publish_all([batch(gw, 2, 2)])
                await until(lambda: pub.highest_ack() >= 2, 30, "ack of seq 2")
                letters = app.dead_letters
                await until(
                    lambda: _has_all(letters.count_by_reason(), {"malformed"}), 30, "letters"
                )
                assert await letters.count_by_reason() == {"malformed": 2}
                by_index = {x.index: x for x in await letters.recent(reason="malformed")}
                assert by_index[1].raw == b'["s\xff",%d,2.0,0]' % (t + 1)  # the reading alone
                assert by_index[None].raw == whole_bad
                assert app.status()["ingest"]["dead_letters"] == {"malformed": 2}
                async with influx_store(influxd, settings.influx.database) as store:
                    assert await count_points(store, "stock_level", gw) == 1 + 2
        finally:
            pub.close()


async def _has_all(counts: Awaitable[dict[str, int]], reasons: set[str]) -> bool:
    return set(await counts) >= reasons


async def test_a_nan_in_a_batch_of_500_costs_one_reading(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    site, gw = unique_name("site"), unique_name("gw")
    async with pg_database() as url:
        settings = cloud_settings(mosquitto, influxd, unique_name, url)
        pub = Publisher(mosquitto, site, gw)
        try:
            async with running(settings) as app:
                payload = nan_batch(gw, 1, 500, bad_index=250)
                pub.publish_all([payload])
                await until(lambda: pub.highest_ack() >= 1, 30, "ack of the batch")
                (letter,) = await app.dead_letters.recent()
                assert (letter.reason, letter.index) == ("non_finite", 250)
                assert b"NaN" in letter.raw
                async with influx_store(influxd, settings.influx.database) as store:
                    times = await stored_times(store, "unclassified", gw)
                sent = json.loads(payload)["readings"]
                assert times == {r[1] for i, r in enumerate(sent) if i != 250}
        finally:
            pub.close()


async def test_a_point_the_store_refuses_is_dead_lettered_alone(
    mosquitto: MosquittoServer, influxd: InfluxServer, unique_name: Callable[[str], str]
) -> None:
    """A real store-side refusal: ``value`` already exists as a string field in ``sensor``
    (field type conflict), so influxd refuses our float for that one measurement only."""
    site, gw = unique_name("site"), unique_name("gw")
    t = now_ms() - 1000
    specs = [
        SignalSpec(id="level", kind=SignalKind.STOCK_LEVEL),
        SignalSpec(id="temp", kind=SignalKind.SENSOR),
    ]
    the_birth = Birth(
        gateway=gw, site=site, boot="b1", agent_version="t", config_hash="h",
        started_ms=t, signals=specs,
    )  # fmt: skip
    readings = [Reading("level", t + i, float(i)) for i in range(3)] + [Reading("temp", t, 21.5)]
    async with pg_database() as url:
        settings = cloud_settings(mosquitto, influxd, unique_name, url)
        async with influx_store(influxd, settings.influx.database) as store:
            await store.ensure_database()
            await store.write([f'sensor,gateway=other value="text" {t}'])
            pub = Publisher(mosquitto, site, gw)
            try:
                async with running(settings) as app:
                    pub.publish_all([encode(the_birth)], pub.topic(Channel.BIRTH))
                    pub.publish_all(
                        [encode(TelemetryBatch(gateway=gw, boot="b1", seq=1, readings=readings))]
                    )
                    await until(lambda: pub.highest_ack() >= 1, 30, "ack of the batch")
                    (letter,) = await app.dead_letters.recent()
                    assert letter.reason == "store_rejected"
                    assert (letter.topic, letter.gateway) == (pub.topic(), gw)
                    assert letter.raw.startswith(b"sensor,")
                    assert "conflict" in letter.detail
                assert await count_points(store, "stock_level", gw) == 3
            finally:
                pub.close()
