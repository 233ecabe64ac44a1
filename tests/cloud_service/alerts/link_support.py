"""Helpers for the alert link's tests through a real Mosquitto: a cloud (alert service, outbox
dispatcher and MQTT link on a SQLite store) and what is retained on the broker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr

from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.mqtt_delivery import MqttAlertLink, MqttAlertSink
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.settings import MqttSettings
from firmware_sim.stack import MosquittoServer
from shared.codec import MessageDecoder
from shared.messages import AlertAck, AlertIndex
from shared.topics import Channel, TopicScheme

AckHandler = Callable[[AlertService], Callable[[AlertAck, str, str], Awaitable[None]]]


@dataclass
class Cloud:
    service: AlertService
    dispatcher: Dispatcher
    link: MqttAlertLink
    store: SqlAlertStore
    scheme: TopicScheme


def no_acks(_service: AlertService) -> Callable[[AlertAck, str, str], Awaitable[None]]:
    async def drop(_ack: AlertAck, _site: str, _gateway: str) -> None:
        return None

    return drop


@asynccontextmanager
async def cloud(
    server: MosquittoServer,
    prefix: str,
    client_id: str,
    db: Path,
    *,
    on_ack: AckHandler = no_acks,
    user: str | None = None,
    wait_synced: bool = True,
    marker_timeout_s: float = 30.0,
) -> AsyncIterator[Cloud]:
    """The alert side of the cloud, wired as ``live.runtime`` wires it."""
    engine = create_sqlite_engine(db)
    await create_tables(engine)
    store = SqlAlertStore(engine)
    settings = AlertSettings(mqtt=MqttAlertSettings(client_id=client_id))
    policy = OutboxPolicy.from_settings(settings.outbox)
    router = Router(settings, policy)
    service = await AlertService.open(store, router)
    mqtt_settings = MqttSettings(
        host=server.host, port=server.port, topic_prefix=prefix, username=user,
        password=SecretStr("pw") if user else None,
    )  # fmt: skip
    link = MqttAlertLink(
        mqtt_settings, settings.mqtt, on_ack(service), plant_alerts=service.plant_alerts,
        marker_timeout_s=marker_timeout_s,
    )  # fmt: skip
    dispatcher = Dispatcher(store, {"mqtt": MqttAlertSink(link)}, policy, router.summary)
    stop = asyncio.Event()
    task = asyncio.create_task(link.run(stop))
    try:
        await link.wait_connected(20)
        if wait_synced:
            await link.wait_synced(20)
        yield Cloud(service, dispatcher, link, store, TopicScheme(prefix))
    finally:
        stop.set()
        await task
        await engine.dispose()


def publish_retained(server: MosquittoServer, topic: str, payload: bytes) -> None:
    """What an older cloud (or a gateway, for ``state``) left retained on the broker."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(server.host, server.port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=True).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


def retained(server: MosquittoServer, topic: str) -> bytes | None:
    """The message retained on ``topic``, if any (waits up to 2 s for it)."""
    got: list[bytes] = []
    done = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(bytes(msg.payload))
        done.set()

    client.on_message = on_message
    client.connect(server.host, server.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    done.wait(2)  # nothing retained: no message (only the bound of this helper)
    client.disconnect()
    client.loop_stop()
    return got[0] if got else None


async def index_of(
    server: MosquittoServer, scheme: TopicScheme, site: str, gateway: str
) -> AlertIndex:
    payload = await asyncio.to_thread(
        retained, server, scheme.topic(site, gateway, Channel.ALERT_INDEX)
    )
    assert payload is not None, f"no retained index for {site}/{gateway}"
    return MessageDecoder(AlertIndex).decode(payload)
