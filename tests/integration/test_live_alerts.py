"""The whole cloud service in one process, for real: a gateway's data and state in over MQTT,
an alert out to the gateway's ``alerts`` channel, the plant's acknowledgement back, and the
REST API showing it (real Mosquitto, influxd, SQLite metadata, uvicorn).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import pytest
from ingest_support import (
    SCHEME,
    Publisher,
    batch,
    birth,
    cloud_settings,
    now_ms,
    sqlite_url,
    until,
)

from cloud_service.api.keys import SqlApiKeyStore
from cloud_service.app import CloudApp, build_app
from firmware_sim.stack import InfluxServer, MosquittoServer
from shared.codec import encode
from shared.messages import Alert, AlertAck, AlertState, GatewayState, State
from shared.topics import Channel

pytestmark = pytest.mark.integration


class AlertWatcher:
    """What a gateway's agent sees on its ``alerts`` channel (retained, per alert)."""

    def __init__(self, server: MosquittoServer, site: str, gateway: str) -> None:
        self.alerts: dict[str, Alert] = {}
        self.cleared: set[str] = set()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(server.host, server.port)
        self.client.subscribe(SCHEME.alerts_subscription(site, gateway), 1)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        alert_id = msg.topic.rsplit("/", 1)[-1]
        with self._lock:
            if not msg.payload:  # retained state removed: the alert is closed
                self.cleared.add(alert_id)
                return
            self.alerts[alert_id] = msgspec.json.decode(msg.payload, type=Alert)

    def get(self, rule: str) -> Alert | None:
        with self._lock:
            return next((a for a in self.alerts.values() if a.rule == rule), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
async def cloud(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> AsyncIterator[CloudApp]:
    settings = cloud_settings(
        mosquitto, influxd, unique_name, sqlite_url(tmp_path), live={"evaluate_interval_s": 0.2}
    )
    app = build_app(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    await app.ingest.wait_connected()
    await until(lambda: app.runtime is not None and app.runtime.api is not None, 20, "the API")
    try:
        yield app
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_gateway_offline_alert_reaches_the_plant_and_its_ack_comes_back(
    cloud: CloudApp, mosquitto: MosquittoServer, unique_name: Callable[[str], str]
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    runtime = cloud.runtime
    assert runtime is not None
    assert runtime.service is not None
    assert runtime.api is not None
    watcher = AlertWatcher(mosquitto, site, gateway)
    pub = Publisher(mosquitto, site, gateway)
    try:
        pub.publish(
            birth(site, gateway, ["s"], period_s=1.0), pub.topic(Channel.BIRTH), retain=True
        )
        pub.publish(batch(gateway, 1, 10, t0=now_ms() - 5_000))
        await until(lambda: pub.acks, 20, "the batch stored")
        offline = State(state=GatewayState.OFFLINE, boot="b1", ts=now_ms())
        pub.publish(encode(offline), pub.topic(Channel.STATE), retain=True)

        await until(
            lambda: watcher.get("gateway-offline") is not None, 20, "the alert at the plant"
        )
        alert = watcher.get("gateway-offline")
        assert alert is not None
        assert alert.state is AlertState.ACTIVE
        assert alert.subject == gateway
        assert not alert.acked

        # an operator acknowledges at the plant; the cloud's lifecycle and the plant agree
        ack = AlertAck(alert=alert.id, gateway=gateway, operator="op1", ts=now_ms())
        pub.publish(encode(ack), pub.topic(Channel.ALERT_ACKS))
        await until(
            lambda: (a := watcher.get("gateway-offline")) is not None and a.acked,
            20,
            "the acknowledged state back at the plant",
        )
        record = runtime.service.lifecycle.alert(alert.id)
        assert record is not None
        assert record.acked

        # the API shows it, with who acknowledged it
        keys = SqlApiKeyStore(cloud.metadata.engine)
        _, token = await keys.create(unique_name("key"), "read")
        url = f"http://127.0.0.1:{runtime.api.port}/api/v1"
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            listed = (await http.get(f"{url}/alerts", params={"site": site})).json()
            events = (await http.get(f"{url}/alerts/{alert.id}/events")).json()
        assert [a["id"] for a in listed["alerts"]] == [alert.id]
        assert any("op1" in str(e) for e in events["events"]), events

        # back online: the acknowledged alert clears and closes, its retained state goes
        online = State(state=GatewayState.ONLINE, boot="b1", ts=now_ms())
        pub.publish(encode(online), pub.topic(Channel.STATE), retain=True)
        pub.publish(batch(gateway, 2, 10))
        await until(lambda: alert.id in watcher.cleared, 20, "the alert closed at the plant")
        assert [a for a in runtime.service.open_alerts() if a.key.site == site] == []
        live = cloud.status()["live"]
        assert live["evaluations"] > 0
        assert (live["refresh_errors"], live["monitor_failures"]) == (0, 0)
    finally:
        watcher.close()
        pub.close()


async def test_rules_seeded_from_toml_are_changed_live_through_the_api(
    cloud: CloudApp, mosquitto: MosquittoServer, unique_name: Callable[[str], str]
) -> None:
    runtime = cloud.runtime
    assert runtime is not None
    assert runtime.api is not None
    keys = SqlApiKeyStore(cloud.metadata.engine)
    _, token = await keys.create(unique_name("key"), "admin")
    url = f"http://127.0.0.1:{runtime.api.port}/api/v1/rules"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        rules = (await http.get(url)).json()["rules"]
        assert "gateway-offline" in [r["id"] for r in rules]  # seeded from the default TOML
        for r in rules:
            if r["id"] == "gateway-offline":
                r["severity"] = "warning"
        assert (await http.put(url, json={"rules": rules})).status_code == 200

    site, gateway = unique_name("site"), unique_name("gw")
    watcher = AlertWatcher(mosquitto, site, gateway)
    pub = Publisher(mosquitto, site, gateway)
    try:
        pub.publish(
            birth(site, gateway, ["s"], period_s=1.0), pub.topic(Channel.BIRTH), retain=True
        )
        offline = State(state=GatewayState.OFFLINE, boot="b1", ts=now_ms())
        pub.publish(encode(offline), pub.topic(Channel.STATE), retain=True)
        await until(lambda: watcher.get("gateway-offline") is not None, 20, "the alert")
        alert = watcher.get("gateway-offline")
        assert alert is not None
        assert alert.severity.value == "warning"  # the rule as changed, not as seeded
    finally:
        watcher.close()
        pub.close()


async def _sse_events(
    http: httpx.AsyncClient, url: str, want: int, last_id: str | None = None
) -> list[dict[str, str]]:
    """Read ``want`` events from the stream (id, event, data), then hang up."""
    headers = {"Last-Event-ID": last_id} if last_id else {}
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    async with http.stream("GET", url, headers=headers, timeout=20) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line:
                if "event" in current:
                    events.append(current)
                    if len(events) >= want:
                        return events
                current = {}
            elif not line.startswith((":", "retry:")):
                key, _, value = line.partition(": ")
                current[key] = value
    return events


async def test_sse_client_reconnecting_with_last_event_id_misses_nothing(
    cloud: CloudApp, mosquitto: MosquittoServer, unique_name: Callable[[str], str]
) -> None:
    runtime = cloud.runtime
    assert runtime is not None
    assert runtime.api is not None
    _, token = await SqlApiKeyStore(cloud.metadata.engine).create(unique_name("key"), "read")
    site = unique_name("site")
    url = f"http://127.0.0.1:{runtime.api.port}/api/v1/alerts/stream?site={site}"
    pubs: list[Publisher] = []

    def offline(gateway: str) -> None:
        pub = Publisher(mosquitto, site, gateway)
        pubs.append(pub)
        pub.publish(
            birth(site, gateway, ["s"], period_s=1.0), pub.topic(Channel.BIRTH), retain=True
        )
        state = State(state=GatewayState.OFFLINE, boot="b1", ts=now_ms())
        pub.publish(encode(state), pub.topic(Channel.STATE), retain=True)

    try:
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
            first = asyncio.create_task(_sse_events(http, url, 1))
            await asyncio.sleep(0.5)  # connected before the first alert
            offline(unique_name("gw"))
            [seen] = await asyncio.wait_for(first, 20)
            assert seen["event"] == "alert.raised"
            # disconnected: two more alerts happen meanwhile
            missed = [unique_name("gw"), unique_name("gw")]
            for gw in missed:
                offline(gw)
            await until(
                lambda: len([a for a in runtime.service.open_alerts() if a.key.site == site]) >= 3,  # type: ignore[union-attr]
                20,
                "3 alerts",
            )
            resumed = await _sse_events(http, url, 2, last_id=seen["id"])
        assert [e["event"] for e in resumed] == ["alert.raised", "alert.raised"]
        assert sorted(json.loads(e["data"])["data"]["alert"]["subject"] for e in resumed) == sorted(
            missed
        )
        assert int(resumed[0]["id"]) > int(seen["id"])
    finally:
        for p in pubs:
            p.close()
