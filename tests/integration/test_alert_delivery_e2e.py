"""Alert delivery end to end, through the real running service (issue 7's delivery tests).

Each test runs the whole cloud service (``build_app`` in process, or ``cloud-service run`` as a
child process) against real Mosquitto and influxd, with SQLite metadata:

* an acknowledgement made at the plant (the real edge agent's status page) while the
  gateway is cut off from the broker reaches the cloud's lifecycle when it reconnects;
* the service killed with SIGKILL between raising an alert and delivering its webhook
  delivers it after a restart, with the same ``webhook-id`` and a valid signature;
* a webhook receiver failing twice gets exactly one accepted, signed delivery; URLs at
  loopback or the cloud metadata address are refused (and the receiver gets nothing);
* an acknowledgement through the REST API reaches the plant as the retained alert state.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import pytest
from alert_e2e_support import (
    AgentRun,
    AlertWatcher,
    CloudProcess,
    OutboxRow,
    WebhookReceiver,
    event_rows,
    open_alert,
    outbox_rows,
    publish_offline,
    raise_gateway_offline,
    retained_alert,
    running,
    runtime_of,
    to_toml,
)
from ingest_support import (
    Publisher,
    batch,
    birth,
    cloud_settings,
    now_ms,
    sqlite_url,
    until,
)

from cloud_service.alerts.webhooks import Verifier, new_secret
from cloud_service.api.keys import SqlApiKeyStore
from cloud_service.app import CloudApp
from edge_agent.status_server import http_request
from firmware_sim.stack import InfluxServer, MosquittoServer
from firmware_sim.stack.ports import free_port
from shared.messages import AlertAck, AlertState
from shared.topics import Channel, TopicScheme
from tests.edge_agent.support import CountingDevice, agent_config

pytestmark = pytest.mark.integration

SCHEME = TopicScheme()


async def offline_alert(cloud: CloudApp, pub: Publisher) -> str:
    """The gateway sends data, then goes offline; the id of the alert the cloud raises."""
    raise_gateway_offline(pub)
    await until(lambda: pub.acks, 30, "the batch stored")
    publish_offline(pub)
    await until(lambda: open_alert(cloud, "gateway-offline", pub.site) is not None, 30, "the alert")
    record = open_alert(cloud, "gateway-offline", pub.site)
    assert record is not None
    return record.id


async def settled_webhooks(cloud: CloudApp, alert_id: str, count: int) -> dict[str, Any]:
    """Wait until ``count`` webhook notifications of the alert are settled (no longer
    pending), give a stray retry a second to show, then return them by recipient."""

    async def settled() -> bool:
        rows = await outbox_of(cloud, alert_id, "webhook")
        return len(rows) == count and all(n.status != "pending" for n in rows)

    await until(settled, 60, f"{count} webhook notifications settled")
    await asyncio.sleep(1.0)  # room for a stray retry, if one were coming
    return {n.recipient: n for n in await outbox_of(cloud, alert_id, "webhook")}


def clear_retained(server: MosquittoServer, topics: list[str]) -> None:
    """Remove what this test left retained on a shared broker."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(server.host, server.port)
    client.loop_start()
    try:
        for topic in topics:
            client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def api_client(app: CloudApp, name: str, scope: str) -> httpx.AsyncClient:
    _, token = await SqlApiKeyStore(app.metadata.engine).create(name, scope)
    runtime = runtime_of(app)
    assert runtime.api is not None
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{runtime.api.port}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def webhook_endpoint(name: str, url: str, secret: str, site: str) -> dict[str, Any]:
    return {"name": name, "url": url, "secrets": [secret], "sites": [site]}


async def outbox_of(app: CloudApp, alert_id: str, channel: str) -> list[Any]:
    runtime = runtime_of(app)
    return [n for n in await runtime.alert_store.notifications(alert_id) if n.channel == channel]


# -- 1. acknowledged at the plant while offline ---------------------------------------------

#: Raised as soon as a gateway's live telemetry is seen, and held while it keeps reporting: an
#: alert for the agent's own gateway that stays active across the agent's outage (the stock
#: ``gateway-offline`` alert would clear when the agent comes back, and the agent drops
#: cleared alerts, so there would be nothing left to acknowledge at the plant).
REPORTING_RULE = """
[[rules]]
id = "gateway-reporting"
type = "gateway_offline"
severity = "critical"
description = "test rule: the gateway's telemetry is seen"
scope = {{ sites = ["{site}"] }}
when = [{{ metric = "silent_min", op = ">=", value = 0 }}]
"""


async def test_plant_ack_made_while_the_gateway_is_offline_reaches_the_cloud_on_reconnect(
    fresh_mosquitto: Callable[..., MosquittoServer],
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    broker = fresh_mosquitto()
    site, gateway = unique_name("site"), unique_name("gw")
    rules = tmp_path / "rules.toml"
    rules.write_text(REPORTING_RULE.format(site=site), encoding="utf-8")
    settings = cloud_settings(
        broker, influxd, unique_name, sqlite_url(tmp_path),
        live={"evaluate_interval_s": 0.2},
        alerts={"rules_file": str(rules), "outbox": {"retry_base_s": 0.1, "retry_cap_s": 1.0}},
    )  # fmt: skip
    async with CountingDevice() as device, running(settings) as cloud:
        runtime = runtime_of(cloud)
        service = runtime.service
        assert service is not None
        values = agent_config(
            site=site, gateway=gateway, broker=broker, device_port=device.port,
            spool_path=tmp_path / "spool.db", status={"enabled": True, "port": 0},
        )  # fmt: skip
        run = AgentRun(values)
        agent = await run.start()
        try:
            await until(lambda: agent.outbox.connected, 30, "the agent connected")
            await until(
                lambda: open_alert(cloud, "gateway-reporting", site) is not None,
                60,
                "the cloud raising the alert on the agent's data",
            )
            record = open_alert(cloud, "gateway-reporting", site)
            assert record is not None
            assert (record.gateway, record.key.subject) == (gateway, gateway)
            alert_id = record.id
            await until(lambda: agent.alerts.get(alert_id) is not None, 30, "the agent's copy")
            held = agent.alerts.get(alert_id)
            assert held is not None
            assert held.state is AlertState.ACTIVE
            assert not held.acked
            port = agent.status_port
            assert port is not None
            page = (await http_request("127.0.0.1", port, "GET", "/")).decode()
            assert alert_id in page

            # the plant loses the broker; an operator acknowledges on the status page meanwhile
            await asyncio.to_thread(broker.stop)
            await until(lambda: not agent.outbox.connected, 30, "the agent seeing the outage")
            body = json.dumps({"operator": "Ana", "comment": "line 3 informed"}).encode()
            raw = await http_request(
                "127.0.0.1", port, "POST", f"/alerts/{alert_id}/ack", body=body,
                headers={"Content-Type": "application/json"},
            )  # fmt: skip
            ack = msgspec.json.decode(raw, type=AlertAck)
            assert (ack.alert, ack.gateway, ack.operator) == (alert_id, gateway, "Ana")
            local = agent.alerts.get(alert_id)
            assert local is not None
            assert local.acked
            assert len(agent.alerts.pending_acks()) == 1  # spooled, not sent: no broker
            await asyncio.sleep(1.0)  # the outage lasts a while; nothing can reach the cloud
            current = service.lifecycle.alert(alert_id)
            assert current is not None
            assert not current.acked

            # the broker comes back: the spooled ack reaches the cloud's lifecycle
            await asyncio.to_thread(broker.start)
            watcher = AlertWatcher(broker, site, gateway)
            try:
                await until(
                    lambda: (a := service.lifecycle.alert(alert_id)) is not None and a.acked,
                    60,
                    "the plant's acknowledgement in the cloud's lifecycle",
                )
                acked = service.lifecycle.alert(alert_id)
                assert acked is not None
                assert acked.state is AlertState.ACTIVE  # still reporting: still active
                assert acked.acked_by == f"Ana@{gateway}"
                assert acked.acked_ms == ack.ts  # the operator's time, not the receipt's
                await until(lambda: not agent.alerts.pending_acks(), 30, "the ack PUBACKed")

                # the plant's retained alert now says acknowledged, from the cloud
                await until(
                    lambda: (a := watcher.get(alert_id)) is not None and a.acked,
                    30,
                    "the acknowledged state retained on the alerts topic",
                )
                retained = await asyncio.to_thread(retained_alert, broker, site, gateway, alert_id)
                assert retained is not None
                assert retained.acked
                assert retained.updated >= ack.ts

                # the event log (REST) says who acknowledged it, where and why
                async with await api_client(cloud, unique_name("key"), "read") as api:
                    events = (await api.get(f"/alerts/{alert_id}/events")).json()["events"]
                    listed = (await api.get("/alerts", params={"site": site})).json()
                acks = [e for e in events if e["type"] == "alert.acked"]
                assert len(acks) == 1, events
                assert acks[0]["actor"] == f"Ana@{gateway}"
                assert "line 3 informed" in acks[0]["reason"]
                assert f"gateway {gateway}" in acks[0]["reason"]
                assert [(a["id"], a["acked"]) for a in listed["alerts"]] == [(alert_id, True)]
            finally:
                watcher.close()
        finally:
            await run.finish()


# -- 2. SIGKILL between raising and delivering ------------------------------------------------


async def test_service_killed_between_raising_and_delivering_delivers_after_restart(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    secret = new_secret()
    receiver = WebhookReceiver(port=free_port())  # nothing listens there yet
    db = tmp_path / "meta.sqlite"
    config = tmp_path / "cloud.toml"
    config.write_text(
        to_toml({
            "mqtt": {
                "host": mosquitto.host, "port": mosquitto.port,
                "client_id": unique_name("cloud"), "share_group": unique_name("grp"),
            },
            "influx": {"url": influxd.url, "database": unique_name("db")},
            "metadata": {"url": f"sqlite+aiosqlite:///{db}"},
            "ingest": {"max_age_s": 0.05, "retry_base_s": 0.05, "retry_cap_s": 0.5},
            "live": {"evaluate_interval_s": 0.2},
            "api": {"port": 0},
            "alerts": {
                "outbox": {"retry_base_s": 0.2, "retry_cap_s": 1.0, "lease_s": 3.0},
                "webhooks": {
                    "allow_networks": ["127.0.0.0/8"],
                    "timeout_s": 5.0,
                    "endpoints": [webhook_endpoint("ops", receiver.url, secret, site)],
                },
            },
        }),
        encoding="utf-8",
    )  # fmt: skip
    cloud = CloudProcess(config, tmp_path / "cloud.log")
    pub = Publisher(mosquitto, site, gateway)
    alert_topics: list[str] = []
    try:
        cloud.start()
        pub.publish(birth(site, gateway, ["s"], period_s=1.0), pub.topic(Channel.BIRTH),
                    retain=True)  # fmt: skip

        async def ingesting() -> bool:  # a batch acked end to end: the service is up
            assert cloud.alive(), cloud.output()
            if not pub.acks:
                pub.publish(batch(gateway, 1, 10, t0=now_ms() - 5_000))
                await asyncio.sleep(1.0)
            return bool(pub.acks)

        await until(ingesting, 120, "the service ingesting")
        publish_offline(pub)

        def pending_raised() -> list[OutboxRow]:
            return [
                r
                for r in outbox_rows(db, "webhook")
                if r.kind == "alert.raised" and r.status == "pending" and r.attempts >= 1
            ]

        await until(pending_raised, 60, "the raised alert's webhook failing in the outbox")
        (row,) = pending_raised()
        assert row.alert_id is not None
        alert_topics.append(SCHEME.alert_topic(site, gateway, row.alert_id))
        assert cloud.kill() == -signal.SIGKILL
        (still,) = [r for r in outbox_rows(db, "webhook") if r.id == row.id]
        assert still.status == "pending"  # never delivered: nothing listened

        with receiver.serving():
            cloud.start()

            def delivered() -> bool:
                assert cloud.alive(), cloud.output()
                return any(r.id == row.id and r.status == "delivered"
                           for r in outbox_rows(db, "webhook"))  # fmt: skip

            await until(delivered, 120, "the webhook delivered after the restart")
            await asyncio.sleep(1.0)  # room for a duplicate, if one were coming
            assert cloud.terminate() == 0, cloud.output()
        hooks = receiver.snapshot()
    finally:
        cloud.terminate()
        pub.close()
        clear_retained(mosquitto, alert_topics)

    accepted = [h for h in hooks if 200 <= h.status < 300]
    per_id = Counter(h.webhook_id for h in accepted)
    assert per_id[row.id] == 1, hooks
    assert all(n == 1 for n in per_id.values()), per_id
    (hook,) = [h for h in accepted if h.webhook_id == row.id]
    assert Verifier([secret]).verify(hook.headers, hook.body, now_s=time.time()) == row.id
    doc = hook.json()
    assert doc["type"] == "alert.raised"
    assert doc["data"]["alert"]["id"] == row.alert_id
    assert doc["data"]["alert"]["subject"] == gateway
    raised = [h for h in hooks if h.json()["type"] == "alert.raised"]
    assert len(raised) == 1, "raised again after the restart"
    kinds = [k for k, _ in event_rows(db, row.alert_id)]
    assert kinds[0] == "raised"
    assert kinds.count("raised") == 1  # the restored occurrence, not a new one


async def test_restart_keeps_a_restored_gateway_offline_alert_as_it_was(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    settings = cloud_settings(
        mosquitto, influxd, unique_name, sqlite_url(tmp_path), live={"evaluate_interval_s": 0.2}
    )
    pub = Publisher(mosquitto, site, gateway)
    alert_id = ""
    try:
        async with running(settings) as cloud:
            alert_id = await offline_alert(cloud, pub)
        async with running(settings) as cloud:  # the same store and broker session
            monitor = runtime_of(cloud).monitor
            assert monitor is not None
            await until(lambda: monitor.evaluations >= 10, 30, "evaluations after the restart")
            await asyncio.sleep(1.0)
            restored = open_alert(cloud, "gateway-offline", site)
            assert restored is not None
            assert restored.id == alert_id
            events = await runtime_of(cloud).alert_store.events_after(0)
    finally:
        pub.close()
        if alert_id:
            clear_retained(mosquitto, [SCHEME.alert_topic(site, gateway, alert_id)])
    kinds = [json.loads(e.body)["type"] for e in events if alert_id in e.body]
    assert kinds == ["alert.raised"]  # the gateway never came back: nothing to clear


# -- 3. webhook retries and the SSRF guard, through the running app -----------------------


async def test_webhook_failing_twice_gets_exactly_one_signed_accepted_delivery(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    old, new = new_secret(), new_secret()
    receiver = WebhookReceiver(statuses=[500, 500, 200])
    with receiver.serving():
        endpoint = webhook_endpoint("ops", receiver.url, new, site)
        endpoint["secrets"] = [new, old]  # a key rotation: either secret verifies
        metadata = webhook_endpoint(
            "metadata", "http://169.254.169.254/latest/meta-data/", new, site
        )
        settings = cloud_settings(
            mosquitto, influxd, unique_name, sqlite_url(tmp_path),
            live={"evaluate_interval_s": 0.2},
            alerts={
                "outbox": {"retry_base_s": 0.1, "retry_cap_s": 0.5, "jitter": 0.0},
                "webhooks": {"allow_networks": ["127.0.0.0/8"], "timeout_s": 5.0,
                             "endpoints": [endpoint, metadata]},
            },
        )  # fmt: skip
        pub = Publisher(mosquitto, site, gateway)
        alert_id = ""
        try:
            async with running(settings) as cloud:
                alert_id = await offline_alert(cloud, pub)
                rows = await settled_webhooks(cloud, alert_id, 2)
        finally:
            pub.close()
            if alert_id:
                clear_retained(mosquitto, [SCHEME.alert_topic(site, gateway, alert_id)])
        hooks = receiver.snapshot()

    assert [h.status for h in hooks] == [500, 500, 200]
    assert {h.webhook_id for h in hooks} == {rows["ops"].id}  # one id across the retries
    for hook in hooks:
        for secrets in ([new], [old]):
            assert Verifier(secrets).verify(hook.headers, hook.body, now_s=time.time()) == (
                rows["ops"].id
            )
    (accepted,) = [h for h in hooks if h.status == 200]
    assert accepted.json()["type"] == "alert.raised"
    assert accepted.json()["data"]["alert"]["id"] == alert_id
    assert (rows["ops"].status, rows["ops"].attempts) == ("delivered", 3)
    # allowing 127.0.0.0/8 does not open the cloud metadata address
    assert rows["metadata"].status == "failed"
    assert rows["metadata"].attempts == 1
    assert "169.254.169.254" in (rows["metadata"].last_error or "")
    assert "link-local" in (rows["metadata"].last_error or "")


async def test_webhook_urls_at_loopback_or_cloud_metadata_are_refused(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    secret = new_secret()
    receiver = WebhookReceiver()
    with receiver.serving():
        endpoints = [
            webhook_endpoint("loopback", receiver.url, secret, site),
            webhook_endpoint("localhost", f"http://localhost:{receiver.port}/hook", secret, site),
            webhook_endpoint("metadata", "http://169.254.169.254/latest/meta-data/", secret, site),
        ]
        settings = cloud_settings(
            mosquitto, influxd, unique_name, sqlite_url(tmp_path),
            live={"evaluate_interval_s": 0.2},
            alerts={
                "outbox": {"retry_base_s": 0.1, "retry_cap_s": 0.5, "jitter": 0.0},
                "webhooks": {"timeout_s": 5.0, "endpoints": endpoints},  # no allow_networks
            },
        )  # fmt: skip
        pub = Publisher(mosquitto, site, gateway)
        alert_id = ""
        try:
            async with running(settings) as cloud:
                alert_id = await offline_alert(cloud, pub)
                rows = await settled_webhooks(cloud, alert_id, 3)
                mqtt_rows = await outbox_of(cloud, alert_id, "mqtt")
        finally:
            pub.close()
            if alert_id:
                clear_retained(mosquitto, [SCHEME.alert_topic(site, gateway, alert_id)])
        hooks = receiver.snapshot()

    assert hooks == []  # nothing reached the receiver
    for name, address, why in [
        ("loopback", "127.0.0.1", "loopback"),
        ("localhost", "", "loopback"),
        ("metadata", "169.254.169.254", "link-local"),
    ]:
        row = rows[name]
        error = row.last_error or ""
        assert (row.status, row.attempts) == ("failed", 1), (name, row)
        assert "refused" in error, (name, error)
        assert why in error, (name, error)
        assert address in error, (name, error)
    # the refusal is the webhook's alone: the plant still got the alert
    assert [n.status for n in mqtt_rows] == ["delivered"]


# -- 4. acknowledged in the cloud ------------------------------------------------------------


async def test_cloud_ack_via_rest_reaches_the_plant_as_retained_state(
    mosquitto: MosquittoServer,
    influxd: InfluxServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    site, gateway = unique_name("site"), unique_name("gw")
    settings = cloud_settings(
        mosquitto, influxd, unique_name, sqlite_url(tmp_path), live={"evaluate_interval_s": 0.2}
    )
    pub = Publisher(mosquitto, site, gateway)
    watcher = AlertWatcher(mosquitto, site, gateway)
    alert_id = ""
    try:
        async with running(settings) as cloud:
            service = runtime_of(cloud).service
            assert service is not None
            raise_gateway_offline(pub)
            await until(lambda: pub.acks, 30, "the batch stored")
            publish_offline(pub)
            await until(
                lambda: watcher.of_rule("gateway-offline"),
                30,
                "the alert at the plant",
            )
            (plant,) = watcher.of_rule("gateway-offline")
            alert_id = plant.id
            assert not plant.acked

            key = unique_name("planner")
            async with await api_client(cloud, key, "ack") as api:
                response = await api.post(
                    f"/alerts/{alert_id}/ack", json={"comment": "expediting the repair"}
                )
                assert response.status_code == 200, response.text
                assert response.json()["alert"]["acked"] is True
                assert response.json()["events"] == ["alert.acked"]
                await until(
                    lambda: (a := watcher.get(alert_id)) is not None and a.acked,
                    30,
                    "the acknowledged state at the plant",
                )
                events = (await api.get(f"/alerts/{alert_id}/events")).json()["events"]
            record = service.lifecycle.alert(alert_id)
            assert record is not None
            assert (record.acked, record.acked_by) == (True, f"api:{key}")
            assert [e["actor"] for e in events if e["type"] == "alert.acked"] == [f"api:{key}"]
            retained = await asyncio.to_thread(retained_alert, mosquitto, site, gateway, alert_id)
            assert retained is not None
            assert retained.acked
            assert retained.state is AlertState.ACTIVE  # acknowledged, still offline
            assert retained.updated >= plant.updated
    finally:
        watcher.close()
        pub.close()
        if alert_id:
            clear_retained(mosquitto, [SCHEME.alert_topic(site, gateway, alert_id)])
