"""The plant's alerts follow the cloud's, end to end: the cloud's alert service (SQLite store,
outbox, dispatcher, MQTT link), a real Mosquitto, a real edge agent with its andon on a real
Modbus coil, and a TCP proxy between agent and broker to take the gateway offline alone.

* An alert that closes while the gateway is offline is gone when it reconnects (the retained
  ``alert-index``), and an acknowledgement made at the plant meanwhile is dropped and counted.
* A cleared, unacknowledged alert stays at the plant and can be acknowledged there.
* Shelving in the cloud reaches the plant: the andon goes out, and comes back on unshelve.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.mqtt_delivery import MqttAlertLink, MqttAlertSink
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.records import AlertKey, ConditionState, RuleType
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables
from cloud_service.settings import MqttSettings
from edge_agent.agent import Agent
from firmware_sim.stack import MosquittoServer
from shared.messages import AlertAck, AlertState, Severity
from tests.edge_agent.support import AgentRun, CoilDevice, CountingDevice, agent_config, until

pytestmark = pytest.mark.integration

COIL = 3


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CuttableProxy:
    """A TCP relay in front of the broker that can cut the gateway off (and refuse it) alone."""

    def __init__(self, broker: MosquittoServer) -> None:
        self.broker = broker
        self.cut = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def disconnect(self) -> None:
        self.cut = True
        for writer in list(self._writers):
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.close()
            return
        self._writers.add(writer)
        up_reader, upstream = await asyncio.open_connection(self.broker.host, self.broker.port)
        self._writers.add(upstream)
        try:
            await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
        finally:
            for w in (writer, upstream):
                self._writers.discard(w)
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@dataclass
class Cloud:
    service: AlertService
    store: SqlAlertStore
    link: MqttAlertLink
    site: str
    gateway: str

    async def delivered(self) -> None:
        """Every notification sent (the dispatcher settles one once the broker has it)."""
        for _ in range(200):
            if set(await self.store.counts()) <= {"delivered", "superseded"}:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"notifications not delivered: {await self.store.counts()}")

    def condition(self, subject: str, *, met: bool = True, **kw: Any) -> ConditionState:
        values: dict[str, Any] = {
            "key": AlertKey("stockout", self.site, subject),
            "rule_type": RuleType.STOCKOUT_RISK,
            "raise_met": met,
            "hold_met": met,
            "severity": Severity.CRITICAL,
            "title": f"{subject} runs out",
            "gateway": self.gateway,
        }
        values.update(kw)
        return ConditionState(**values)

    def open_ids(self) -> set[str]:
        return {a.id for a in self.service.open_alerts()}


@asynccontextmanager
async def cloud(
    broker: MosquittoServer, prefix: str, site: str, gateway: str, client_id: str, tmp: Path
) -> AsyncIterator[Cloud]:
    """The cloud's alerting as the running service assembles it (dispatcher woken on enqueue,
    plant acks into the service)."""
    engine = create_sqlite_engine(tmp / "alerts.db")
    await create_tables(engine)
    store = SqlAlertStore(engine)
    settings = AlertSettings(mqtt=MqttAlertSettings(client_id=client_id))
    policy = OutboxPolicy.from_settings(settings.outbox)
    router = Router(settings, policy)

    async def on_ack(ack: AlertAck, ack_site: str, ack_gateway: str) -> object:
        return await service.acknowledge_from_plant(
            ack, site=ack_site, gateway=ack_gateway, now_ms=now_ms()
        )

    mqtt = MqttSettings(host=broker.host, port=broker.port, topic_prefix=prefix)
    link = MqttAlertLink(mqtt, settings.mqtt, on_ack)
    dispatcher = Dispatcher(store, {"mqtt": MqttAlertSink(link)}, policy, router.summary)
    service = await AlertService.open(store, router, on_enqueue=dispatcher.wake)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(link.run(stop)), asyncio.create_task(dispatcher.run(stop))]
    try:
        await link.wait_connected(20)
        yield Cloud(service, store, link, site, gateway)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await engine.dispose()


@dataclass
class Plant:
    cloud: Cloud
    coil: CoilDevice
    proxy: CuttableProxy
    values: dict[str, Any]
    run: AgentRun
    agent: Agent

    def holds(self) -> dict[str, tuple[AlertState, bool]]:
        return {a.id: (a.state, a.acked) for a in self.agent.alerts.active()}

    async def restart_agent(self) -> None:
        await self.run.finish()
        self.run = AgentRun(self.values)
        self.agent = await self.run.start()


@pytest.fixture
async def plant(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> AsyncIterator[Plant]:
    prefix = f"{unique_name('t')}/v1"  # this test's cloud is the only writer of its alerts
    site, gateway = unique_name("site"), unique_name("gw")
    async with (
        cloud(mosquitto, prefix, site, gateway, unique_name("alerts"), tmp_path) as c,
        CoilDevice() as coil,
        CountingDevice() as device,
        CuttableProxy(mosquitto) as proxy,
    ):
        values = agent_config(
            site=site,
            gateway=gateway,
            broker=mosquitto,
            device_port=device.port,
            spool_path=tmp_path / "spool.db",
            topic_prefix=prefix,
            andon={"host": "127.0.0.1", "port": coil.port, "coil": COIL, "refresh_s": 60},
        )
        values["broker"] |= {"host": "127.0.0.1", "port": proxy.port}
        run = AgentRun(values)
        agent = await run.start()
        p = Plant(c, coil, proxy, values, run, agent)
        try:
            await until(lambda: p.agent.outbox.connected, 10, "the agent's connection")
            await until(lambda: coil.value(COIL) is False, 10, "the andon OFF at start")
            yield p
        finally:
            await p.run.finish()


async def test_an_alert_closed_while_the_gateway_was_offline_is_gone_when_it_is_back(
    plant: Plant,
) -> None:
    c = plant.cloud
    stock, low = c.condition("A-113"), c.condition("B-220", severity=Severity.WARNING)
    raised = await c.service.observe([stock, low], now_ms())
    closing, staying = (e.alert.id for e in raised)
    await until(lambda: set(plant.holds()) == {closing, staying}, 10, "both alerts at the plant")
    await until(lambda: plant.coil.value(COIL) is True, 10, "the andon ON")

    plant.proxy.disconnect()  # the gateway is offline; the cloud is not
    await until(lambda: not plant.agent.outbox.connected, 10, "the gateway offline")
    # Meanwhile an operator acknowledges it at the plant, and in the cloud it clears and a
    # planner acknowledges it: it closes there while the gateway cannot hear of it.
    plant.agent.acknowledge(closing, "mia", "refilled")
    await c.service.observe([c.condition("A-113", met=False)], now_ms())
    await c.service.acknowledge(closing, actor="planner", now_ms=now_ms())
    assert c.open_ids() == {staying}
    await c.delivered()  # published while the gateway could not hear it

    plant.proxy.cut = False  # back: the agent reconnects by itself
    await until(lambda: set(plant.holds()) == {staying}, 15, "the closed alert gone")
    await until(lambda: not plant.agent.alerts.pending_acks(), 10, "the ack settled")
    await until(lambda: plant.coil.value(COIL) is False, 10, "the andon OFF")
    # The plant's ack came too late: dropped and counted at the plant, or refused and counted
    # by the cloud (or both: it was on its way when the index arrived), never silently lost,
    # and it changed nothing in the cloud.
    await until(
        lambda: plant.agent.alerts.acks_obsolete + c.link.acks_dropped >= 1, 10, "the ack counted"
    )
    assert c.open_ids() == {staying}
    await plant.restart_agent()  # the removal is in the spool
    assert set(plant.holds()) == {staying}


async def test_a_cleared_unacknowledged_alert_stays_at_the_plant_and_is_acknowledged_there(
    plant: Plant,
) -> None:
    c = plant.cloud
    (raised,) = await c.service.observe([c.condition("lc7")], now_ms())
    alert_id = raised.alert.id
    await until(lambda: plant.coil.value(COIL) is True, 10, "the andon ON")
    await c.service.observe([c.condition("lc7", met=False)], now_ms())
    await until(
        lambda: plant.holds() == {alert_id: (AlertState.CLEARED, False)}, 10, "cleared, unacked"
    )
    await until(lambda: plant.coil.value(COIL) is False, 10, "the andon OFF (cleared)")
    await plant.restart_agent()
    assert plant.holds() == {alert_id: (AlertState.CLEARED, False)}
    await until(lambda: plant.agent.outbox.connected, 10, "the agent's connection")

    plant.agent.acknowledge(alert_id, "ana", "checked")  # refused before the fix
    await until(lambda: not c.open_ids(), 10, "the alert closed in the cloud")
    await until(lambda: plant.holds() == {}, 10, "the alert gone at the plant")
    assert plant.agent.alerts.acks_obsolete == 0


async def test_shelving_in_the_cloud_puts_the_andon_out_and_unshelving_lights_it_again(
    plant: Plant,
) -> None:
    c = plant.cloud
    (raised,) = await c.service.observe([c.condition("C-310")], now_ms())
    alert_id = raised.alert.id
    await until(lambda: plant.coil.value(COIL) is True, 10, "the andon ON")

    until_ms = now_ms() + 3_600_000
    await c.service.shelve(alert_id, until_ms=until_ms, actor="ana", now_ms=now_ms())

    def shelved_until() -> int | None:
        held = plant.agent.alerts.get(alert_id)
        assert held is not None
        return held.shelved_until

    await until(lambda: plant.coil.value(COIL) is False, 10, "the andon OFF (shelved)")
    assert shelved_until() == until_ms
    assert plant.holds() == {alert_id: (AlertState.ACTIVE, False)}  # still there, unacked

    await c.service.unshelve(alert_id, actor="ana", now_ms=now_ms())
    await until(lambda: shelved_until() is None and alert_id in plant.holds(), 10, "unshelved")
    await until(lambda: plant.coil.value(COIL) is True, 10, "the andon ON again")
