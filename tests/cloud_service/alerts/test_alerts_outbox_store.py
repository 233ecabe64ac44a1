"""Service, SQLite store and dispatcher together, with in-process fake sinks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from alerts_support import condition

from cloud_service.alerts.dispatcher import Dispatcher, wall_ms
from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.lifecycle import SavedTrack
from cloud_service.alerts.outbox import Notification, OutboxPolicy, Status
from cloud_service.alerts.records import AlertEvent, AlertKey, EventKind
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings, EmailRecipient, EmailSettings
from cloud_service.alerts.store import SqlAlertStore, create_sqlite_engine, create_tables

NOW = 1_790_000_000_000
SETTINGS = AlertSettings(
    email=EmailSettings(recipients=[EmailRecipient(address="ops@example.com")]),
)


class FakeSink:
    def __init__(self, channel: str, errors: Sequence[DeliveryError | None] = ()) -> None:
        self.channel = channel
        self.errors = list(errors)
        self.sent: list[Notification] = []

    async def send(self, n: Notification) -> None:
        if self.errors:
            error = self.errors.pop(0)
            if error is not None:
                raise error
        self.sent.append(n)


def transient() -> DeliveryError:
    return DeliveryError("try later", channel="email", recipient="x", retryable=True)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlAlertStore]:
    engine = create_sqlite_engine(tmp_path / "alerts.sqlite")
    await create_tables(engine)
    yield SqlAlertStore(engine)
    await engine.dispose()


def parts(settings: AlertSettings = SETTINGS) -> tuple[OutboxPolicy, Router]:
    policy = OutboxPolicy.from_settings(settings.outbox)
    return policy, Router(settings, policy)


async def test_a_step_is_recorded_whole_and_restored_after_a_restart(store: SqlAlertStore) -> None:
    _, router = parts()
    service = await AlertService.open(store, router)
    events = await service.observe([condition()], NOW)
    assert [e.kind for e in events] == [EventKind.RAISED]
    logged = await store.events_after(0)
    assert [e.type for e in logged] == ["alert.raised"]
    body = json.loads(logged[0].body)
    assert body["data"]["alert"]["id"] == events[0].alert.id
    assert body["data"]["actor"] == "system"
    outbox = await store.notifications(events[0].alert.id)
    assert sorted(n.channel for n in outbox) == ["email", "mqtt"]
    again = await AlertService.open(store, router)
    assert [a.id for a in again.open_alerts()] == [events[0].alert.id]
    assert await again.observe([condition()], NOW + 1000) == []  # no duplicate after restart


async def test_claimed_notifications_come_back_only_after_their_lease(
    store: SqlAlertStore,
) -> None:
    _, router = parts()
    service = await AlertService.open(store, router)
    await service.observe([condition()], NOW)
    first = await store.claim_due(NOW, 10, lease_ms=60_000)
    assert len(first) == 2
    assert await store.claim_due(NOW + 59_999, 10, lease_ms=60_000) == []
    again = await store.claim_due(NOW + 60_000, 10, lease_ms=60_000)
    assert {n.id for n in again} == {n.id for n in first}


async def test_a_newer_mqtt_state_supersedes_the_pending_older_one(store: SqlAlertStore) -> None:
    _, router = parts()
    service = await AlertService.open(store, router)
    (raised,) = await service.observe([condition()], NOW)
    await service.acknowledge(raised.alert.id, actor="ana", now_ms=NOW + 1)
    mqtt = [n for n in await store.notifications(raised.alert.id) if n.channel == "mqtt"]
    assert [(n.kind, n.status) for n in mqtt] == [
        ("alert.raised", Status.SUPERSEDED), ("alert.acked", Status.PENDING),
    ]  # fmt: skip


async def test_dispatcher_retries_then_delivers_and_gives_up_on_permanent_errors(
    store: SqlAlertStore,
) -> None:
    policy, router = parts()
    service = await AlertService.open(store, router)
    await service.observe([condition()], NOW)
    email = FakeSink("email", [transient(), transient()])
    mqtt = FakeSink("mqtt", [DeliveryError("no", channel="mqtt", recipient="x", retryable=False)])
    d = Dispatcher(store, {"email": email, "mqtt": mqtt}, policy, router.summary,
                   rand=lambda: 0.0)  # fmt: skip
    now = NOW
    for _ in range(3):
        await d.run_once(now)
        due = await store.next_due_ms()
        now = due if due is not None else now
    assert len(email.sent) == 1
    assert mqtt.sent == []
    (delivered,) = [n for n in await store.notifications() if n.channel == "email"]
    assert (delivered.status, delivered.attempts) == (Status.DELIVERED, 3)
    assert now == NOW + 2000 + 4000  # back-off 2 s, then 4 s
    assert await store.counts() == {"delivered": 1, "failed": 1}


async def test_a_storm_becomes_one_summary_mail(store: SqlAlertStore) -> None:
    policy, router = parts()
    service = await AlertService.open(store, router)
    await service.observe([condition(f"lc{i}") for i in range(12)], NOW)
    email = FakeSink("email")
    d = Dispatcher(store, {"email": email, "mqtt": FakeSink("mqtt")}, policy, router.summary)
    await d.run_once(NOW)
    await d.run_once(NOW)
    assert [n.kind for n in email.sent] == ["alert.summary"]
    summary = json.loads(email.sent[0].payload)["data"]
    assert summary["count"] == 12
    assert len(summary["alerts"]) == 12
    counts = await store.counts()
    assert counts == {"delivered": 12 + 1, "summarised": 12}


class FlakyLog:
    """An AlertLog whose first write fails, as when the database is briefly down."""

    def __init__(self, inner: SqlAlertStore) -> None:
        self.inner = inner
        self.fail = 1

    async def record(
        self,
        events: Sequence[AlertEvent],
        tracks: Sequence[tuple[AlertKey, SavedTrack | None]],
        notifications: Sequence[Notification],
    ) -> list[int]:
        if self.fail:
            self.fail -= 1
            raise OSError("database is down")
        return await self.inner.record(events, tracks, notifications)

    async def load_tracks(self) -> list[SavedTrack]:
        return await self.inner.load_tracks()


async def test_a_failed_write_is_kept_and_written_by_the_next_step(store: SqlAlertStore) -> None:
    _, router = parts()
    service = await AlertService.open(FlakyLog(store), router)
    with pytest.raises(OSError, match="down"):
        await service.observe([condition()], NOW)
    assert await store.events_after(0) == []
    await service.tick(NOW + 1000)
    assert [e.type for e in await store.events_after(0)] == ["alert.raised"]
    assert len(await store.notifications()) == 2


async def test_the_dispatcher_loop_is_woken_by_an_enqueue(store: SqlAlertStore) -> None:
    policy, router = parts()
    email, mqtt = FakeSink("email"), FakeSink("mqtt")
    d = Dispatcher(store, {"email": email, "mqtt": mqtt}, policy, router.summary, max_idle_s=3600)
    service = await AlertService.open(store, router, on_enqueue=d.wake)
    stop = asyncio.Event()
    loop = asyncio.create_task(d.run(stop))
    try:
        await asyncio.sleep(0)  # the loop finds nothing and goes to sleep for an hour
        await service.observe([condition()], wall_ms())
        for _ in range(2000):
            if email.sent and mqtt.sent:
                break
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await loop
    assert [n.kind for n in email.sent + mqtt.sent] == ["alert.raised", "alert.raised"]
    assert await store.prune(wall_ms() + 1) == 2
    assert await store.counts() == {}
