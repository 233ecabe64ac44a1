"""Alerts to the plant and acknowledgements back, through a real Mosquitto."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from alerts_support import condition
from paho.mqtt.enums import CallbackAPIVersion

from cloud_service.alerts.outbox import Status
from cloud_service.alerts.service import AlertService
from firmware_sim.stack import MosquittoServer
from shared.codec import MessageDecoder, encode
from shared.messages import Alert, AlertAck, AlertState
from shared.topics import Channel, TopicScheme
from tests.cloud_service.alerts.link_support import cloud

NOW = 1_790_000_000_000
pytestmark = pytest.mark.integration


class Gateway:
    """A plant-side paho client that records what it receives."""

    def __init__(self, server: MosquittoServer, client_id: str) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)  # fmt: skip
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cv = threading.Condition()
        self.client.on_message = self._on_message
        self.client.connect(server.host, server.port)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cv:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cv.notify_all()

    def wait_for(self, predicate: Callable[[list[tuple[str, bytes, bool]]], bool]) -> bool:
        with self.cv:
            return self.cv.wait_for(lambda: predicate(self.messages), 20)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(20)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


def plant_acks(service: AlertService) -> Callable[[AlertAck, str, str], Awaitable[None]]:
    async def on_ack(ack: AlertAck, site: str, gateway: str) -> None:
        await service.acknowledge_from_plant(ack, site=site, gateway=gateway, now_ms=NOW + 600_000)

    return on_ack


def alerts_of(messages: list[tuple[str, bytes, bool]]) -> list[Alert]:
    decoder = MessageDecoder(Alert)
    return [decoder.decode(p) for _, p, _ in messages if p]


async def test_a_reconnecting_gateway_gets_the_active_set_and_closed_alerts_vanish(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = f"{unique_name('t')}/v1"
    async with cloud(
        mosquitto, prefix, unique_name("alerts"), tmp_path / "a.db", on_ack=plant_acks
    ) as c:
        raised = await c.service.observe([condition("lc7"), condition("lc8")], NOW)
        await c.dispatcher.run_once(NOW)
        closed_id = raised[1].alert.id
        await c.service.observe([condition("lc8", raise_met=False)], NOW + 1000)
        await c.service.acknowledge(closed_id, actor="ana", now_ms=NOW + 2000)
        report = await c.dispatcher.run_once(NOW + 2000)
        assert report.count(Status.DELIVERED) == 1  # only the newest state of lc8
        base = c.scheme.topic("s1", "gw-1", Channel.ALERTS)
    # The gateway connects afterwards: retained alerts, then a retained end marker.
    gw = Gateway(mosquitto, unique_name("gw"))
    try:
        gw.publish(f"{prefix}/s1/gw-1/alerts-end", b"end", retain=True)
        gw.client.subscribe(f"{base}/+", qos=1)
        gw.client.subscribe(f"{prefix}/s1/gw-1/alerts-end", qos=1)
        assert await asyncio.to_thread(gw.wait_for, lambda m: any(p == b"end" for _, p, _ in m))
        retained = [m for m in gw.messages if m[0].startswith(base + "/")]
    finally:
        gw.close()
    ((topic, _, was_retained),) = retained
    (alert,) = alerts_of(retained)
    assert (topic, was_retained) == (f"{base}/{raised[0].alert.id}", True)
    assert (alert.id, alert.state, alert.acked) == (raised[0].alert.id, AlertState.ACTIVE, False)
    assert alert.title == "Load cell lc7 stuck"
    assert alert.figures == {"stuck_min": 20.0}


async def test_a_live_gateway_sees_the_closing_state_then_the_deletion(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = f"{unique_name('t')}/v1"
    gw = Gateway(mosquitto, unique_name("gw"))
    try:
        async with cloud(
            mosquitto, prefix, unique_name("alerts"), tmp_path / "a.db", on_ack=plant_acks
        ) as c:
            gw.client.subscribe(c.scheme.topic("s1", "gw-1", Channel.ALERTS) + "/+", qos=1)
            (raised,) = await c.service.observe([condition("lc7", gateway="gw-1")], NOW)
            await c.dispatcher.run_once(NOW)
            assert await asyncio.to_thread(gw.wait_for, lambda m: len(m) == 1)
            await c.service.acknowledge(raised.alert.id, actor="ana", now_ms=NOW + 1)
            await c.dispatcher.run_once(NOW + 1)
            await c.service.observe([condition("lc7", raise_met=False)], NOW + 2)
            await c.dispatcher.run_once(NOW + 2)
            assert await asyncio.to_thread(gw.wait_for, lambda m: len(m) == 4)
    finally:
        gw.close()
    states = [(a.state, a.acked) for a in alerts_of(gw.messages)]
    assert states == [(AlertState.ACTIVE, False), (AlertState.ACTIVE, True),
                      (AlertState.CLEARED, True)]  # fmt: skip
    assert gw.messages[-1][1] == b""  # the retained copy is deleted


async def test_plant_acks_update_the_lifecycle_even_when_sent_while_the_cloud_was_down(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = f"{unique_name('t')}/v1"
    client_id = unique_name("alerts")
    db = tmp_path / "a.db"
    scheme = TopicScheme(prefix)
    async with cloud(mosquitto, prefix, client_id, db, on_ack=plant_acks) as c:
        lc7, lc9 = await c.service.observe(
            [condition("lc7"), condition("lc9", gateway="gw-2")], NOW
        )
    # The cloud is down; the plant acknowledges lc7, and gw-2 tries to ack gw-1's alert.
    gw = Gateway(mosquitto, unique_name("gw"))
    try:
        ack = AlertAck(alert=lc7.alert.id, gateway="gw-1", operator="mia", ts=NOW + 60_000,
                       comment="refilled")  # fmt: skip
        gw.publish(scheme.topic("s1", "gw-1", Channel.ALERT_ACKS), encode(ack))
        foreign = AlertAck(alert=lc7.alert.id, gateway="gw-2", operator="eve", ts=NOW)
        gw.publish(scheme.topic("s1", "gw-2", Channel.ALERT_ACKS), encode(foreign))
        gw.publish(scheme.topic("s1", "gw-2", Channel.ALERT_ACKS), b"{not json")
    finally:
        gw.close()
    async with cloud(mosquitto, prefix, client_id, db, on_ack=plant_acks) as c:
        await until(lambda: c.link.acks_applied + c.link.acks_dropped == 3)
        assert (c.link.acks_applied, c.link.acks_dropped) == (1, 2)
        alert = c.service.lifecycle.alert(lc7.alert.id)
        assert alert is not None
        assert alert.acked
        assert alert.acked_by == "mia@gw-1"
        assert alert.acked_ms == NOW + 60_000
        other = c.service.lifecycle.alert(lc9.alert.id)
        assert other is not None
        assert not other.acked
        events = [e for e in await c.store.events_after(0) if e.type == "alert.acked"]
        assert len(events) == 1
        assert "refilled" in events[0].body
