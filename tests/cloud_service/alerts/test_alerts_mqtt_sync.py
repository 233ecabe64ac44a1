"""The alert link's sync with the broker when things go wrong: the broker lost its retained
alerts, a second link publishes on the same prefix, the broker refuses the sync topic, the
broker is unreachable (pure parts first, then through a real Mosquitto)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from alerts_support import condition

from cloud_service.alerts.dispatcher import Dispatcher
from cloud_service.alerts.errors import DeliveryError
from cloud_service.alerts.mqtt_delivery import MqttAlertLink
from cloud_service.alerts.outbox import Notification, OutboxPolicy, new_id
from cloud_service.alerts.plant_index import ErrorGate, IndexBook, marker_delay_s
from cloud_service.alerts.settings import AlertSettings, MqttAlertSettings
from cloud_service.settings import MqttSettings
from firmware_sim.stack import MosquittoOptions, MosquittoServer
from shared.codec import MessageDecoder
from shared.messages import Alert, AlertAck, AlertState, Severity
from shared.topics import TopicScheme
from tests.cloud_service.alerts.link_support import cloud, index_of, retained

NOW = 1_790_000_000_000
KEY = ("s1", "gw-1")
LOGGER = "cloud_service.alerts.mqtt_delivery"


def wire(alert_id: str, *, closed: bool = False) -> Alert:
    return Alert(id=alert_id, rule="r", severity=Severity.CRITICAL, state=AlertState.ACTIVE,
                 subject=alert_id, title=alert_id, raised=NOW, updated=NOW,
                 closed=closed)  # fmt: skip


# -- pure -----------------------------------------------------------------------------------


def test_the_book_names_the_open_alerts_the_broker_does_not_retain() -> None:
    book = IndexBook()
    book.load_alert(KEY, "al-kept", 5)
    plant = [wire("al-kept"), wire("al-lost"), wire("al-closing", closed=True)]
    assert [a.id for a in book.missing(KEY, plant)] == ["al-lost"]
    assert [a.id for a in book.missing(("s1", "gw-new"), [wire("al-x")])] == ["al-x"]
    assert book.stale() == [KEY]  # asking creates no gateway


def test_repeated_errors_are_logged_once_per_period_and_marker_retries_back_off() -> None:
    gate = ErrorGate(300.0)
    assert gate.allow("refused", 0.0)
    assert not gate.allow("refused", 299.0)
    assert gate.allow("other", 1.0)
    assert gate.allow("refused", 300.0)
    assert [marker_delay_s(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]


async def test_an_unconnected_link_fails_an_alert_at_once() -> None:
    """The broker is unreachable: the notification fails now and the outbox retries it later,
    instead of holding a send slot for the sync timeout."""
    link = MqttAlertLink(MqttSettings(host="127.0.0.1", port=1, topic_prefix="t/v1"),
                         MqttAlertSettings(client_id="x"), _no_acks)  # fmt: skip
    started = time.monotonic()
    with pytest.raises(DeliveryError, match="not connected") as raised:
        await link.publish_alert(KEY, wire("al-1"))
    assert raised.value.retryable
    assert time.monotonic() - started < 1.0


async def _no_acks(_ack: AlertAck, _site: str, _gateway: str) -> None:
    return None


# -- through a real broker ------------------------------------------------------------------


async def until(predicate: Callable[[], bool], within_s: float = 20.0) -> None:
    end = time.monotonic() + within_s
    while not predicate():
        assert time.monotonic() < end, "condition never became true"
        await asyncio.sleep(0.02)


@pytest.mark.integration
async def test_open_alerts_the_broker_lost_are_republished_before_any_index_omits_them(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
) -> None:
    server = fresh_mosquitto(MosquittoOptions(persistence=False))
    prefix = f"{unique_name('t')}/v1"
    scheme = TopicScheme(prefix)
    async with cloud(server, prefix, unique_name("alerts"), tmp_path / "a.db") as c:
        (a,) = await c.service.observe([condition("lc7")], NOW)
        await c.dispatcher.run_once(NOW)
        assert set((await index_of(server, scheme, *KEY)).alerts) == {a.alert.id}
        before = (await index_of(server, scheme, *KEY)).rev

        server.stop()  # restarted without its retained messages (or inside the autosave window)
        server.start()
        await until(lambda: not c.link._synced.is_set())
        await c.link.wait_synced(30)

        # A is open in the lifecycle: back on the broker, in its current state, and listed.
        state = await asyncio.to_thread(retained, server, scheme.alert_topic(*KEY, a.alert.id))
        assert state is not None
        restored = MessageDecoder(Alert).decode(state)
        assert (restored.id, restored.state, restored.acked) == (a.alert.id, AlertState.ACTIVE,
                                                                 False)  # fmt: skip
        assert restored.rev > before
        assert c.link.states_restored == 1

        # An unrelated alert B of the same gateway: its index still lists A.
        (b,) = await c.service.observe([condition("lc7"), condition("lc8")], NOW + 1000)
        await c.dispatcher.run_once(NOW + 1000)
        index = await index_of(server, scheme, *KEY)
        assert set(index.alerts) == {a.alert.id, b.alert.id}
        assert index.alerts[a.alert.id] == restored.rev


@pytest.mark.integration
async def test_an_index_that_would_omit_an_open_alert_waits_for_its_state(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    """The broker lost A while the link stayed connected (an operator deleted the retained
    message): the next index of the gateway republishes A first."""
    prefix = f"{unique_name('t')}/v1"
    scheme = TopicScheme(prefix)
    async with cloud(mosquitto, prefix, unique_name("alerts"), tmp_path / "a.db") as c:
        (a,) = await c.service.observe([condition("lc7")], NOW)
        await c.dispatcher.run_once(NOW)
        assert set((await index_of(mosquitto, scheme, *KEY)).alerts) == {a.alert.id}
        c.link.book.deleted(KEY, a.alert.id)  # what the book believes after such a loss
        (b,) = await c.service.observe([condition("lc7"), condition("lc8")], NOW + 1000)
        await c.dispatcher.run_once(NOW + 1000)
        assert set((await index_of(mosquitto, scheme, *KEY)).alerts) == {a.alert.id, b.alert.id}


@pytest.mark.integration
async def test_a_second_alert_link_on_the_same_prefix_is_reported(
    mosquitto: MosquittoServer,
    unique_name: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"{unique_name('t')}/v1"
    caplog.set_level(logging.ERROR, logger=LOGGER)
    async with (
        cloud(mosquitto, prefix, "cloud-a", tmp_path / "a.db") as one,
        cloud(mosquitto, prefix, "cloud-b", tmp_path / "b.db") as two,
    ):

        def errors() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]

        await one.service.observe([condition("lc7")], NOW)
        await one.dispatcher.run_once(NOW)
        await until(lambda: len(errors()) > 0, 5.0)
        await two.service.observe([condition("lc8")], NOW)
        await two.dispatcher.run_once(NOW)
        await until(lambda: any("('cloud-a')" in m for m in errors()), 5.0)
    logged = errors()
    assert any("'cloud-a'" in m and "not by this link ('cloud-b')" in m for m in logged)
    assert any("'cloud-b'" in m and "not by this link ('cloud-a')" in m for m in logged)
    assert all("one alert link per prefix" in m for m in logged)


def _acl(prefix: str, *extra: str) -> MosquittoOptions:
    """The cloud's user granted only the gateways' topic tree (and ``extra``)."""
    return MosquittoOptions(
        users={"cloud": "pw"},
        allow_anonymous=False,
        acl=["user cloud", f"topic readwrite {prefix}/+/+/+",
             f"topic readwrite {prefix}/+/+/alerts/+", *extra],
    )  # fmt: skip


@pytest.mark.integration
async def test_a_refused_sync_marker_is_logged_with_its_topic_and_alerts_fail_at_once(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    prefix = f"{unique_name('t')}/v1"
    server = fresh_mosquitto(_acl(prefix))
    caplog.set_level(logging.ERROR, logger=LOGGER)
    client_id = unique_name("alerts")
    sync_topic = f"{prefix}/alert-sync/{client_id}"
    async with cloud(server, prefix, client_id, tmp_path / "a.db", user="cloud",
                     wait_synced=False) as c:  # fmt: skip
        await until(lambda: c.link.sync_problem is not None, 5.0)
        started = time.monotonic()
        with pytest.raises(DeliveryError):
            await c.link.publish_alert(KEY, wire("al-1"))
        assert time.monotonic() - started < 2.0
        await asyncio.sleep(2.5)  # reconnects meanwhile (this Mosquitto drops the client)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, errors  # once, not at every reconnect
    assert sync_topic in errors[0]
    assert "Not authorized" in errors[0]


@pytest.mark.integration
async def test_a_sync_marker_that_never_comes_back_is_logged(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Write access without read access: the broker takes the marker but never delivers it."""
    prefix = f"{unique_name('t')}/v1"
    server = fresh_mosquitto(_acl(prefix, f"topic write {prefix}/alert-sync/#"))
    caplog.set_level(logging.ERROR, logger=LOGGER)
    client_id = unique_name("alerts")
    async with cloud(server, prefix, client_id, tmp_path / "a.db", user="cloud",
                     wait_synced=False, marker_timeout_s=1.0) as c:  # fmt: skip
        await until(lambda: c.link.sync_problem is not None, 5.0)
        with pytest.raises(DeliveryError, match="did not come back"):
            await c.link.publish_alert(KEY, wire("al-1"))
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"{prefix}/alert-sync/{client_id}" in error


@pytest.mark.integration
async def test_with_the_sync_topic_granted_the_link_syncs_and_delivers(
    fresh_mosquitto: Callable[..., MosquittoServer],
    unique_name: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The ACL docs/protocol.md gives for the cloud's user when it is not granted ``#``."""
    prefix = f"{unique_name('t')}/v1"
    server = fresh_mosquitto(_acl(prefix, f"topic readwrite {prefix}/alert-sync/#"))
    caplog.set_level(logging.ERROR, logger=LOGGER)
    async with cloud(server, prefix, unique_name("alerts"), tmp_path / "a.db",
                     user="cloud") as c:  # fmt: skip
        await c.service.observe([condition("lc7")], NOW)
        report = await c.dispatcher.run_once(NOW)
        assert report.outcomes == {"delivered": 1}
        assert c.link.sync_problem is None
    assert not [r for r in caplog.records if r.levelno == logging.ERROR]


# -- the dispatcher --------------------------------------------------------------------------


class _Outbox:
    def __init__(self, ns: list[Notification]) -> None:
        self.ns = ns

    async def claim_due(self, now_ms: int, limit: int, lease_ms: int) -> list[Notification]:
        out, self.ns = self.ns[:limit], self.ns[limit:]
        return out

    async def settle(self, outcomes: object, summaries: object = ()) -> None:
        return None

    async def next_due_ms(self) -> int | None:
        return None

    async def enqueue(self, ns: object) -> None:
        return None


class _Stuck:
    """A sink that hangs until released (a broker that does not answer)."""

    channel = "mqtt"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def send(self, n: Notification) -> None:
        await self.release.wait()


class _Mail:
    channel = "email"

    def __init__(self) -> None:
        self.sent = asyncio.Event()

    async def send(self, n: Notification) -> None:
        self.sent.set()


def _note(channel: str, recipient: str) -> Notification:
    return Notification(id=new_id(), channel=channel, recipient=recipient, kind="alert.raised",
                        payload=b"{}", created_ms=NOW, expires_ms=NOW + 3_600_000,
                        next_attempt_ms=NOW, severity=Severity.CRITICAL,
                        alert_id="al-1")  # fmt: skip


async def test_email_never_waits_behind_a_stuck_mqtt_channel() -> None:
    settings = AlertSettings()
    stuck, mail = _Stuck(), _Mail()
    outbox = _Outbox([*(_note("mqtt", f"s1/gw-{i}") for i in range(4)),
                      _note("email", "ops@example.com")])  # fmt: skip
    dispatcher = Dispatcher(outbox, {"mqtt": stuck, "email": mail},
                            OutboxPolicy.from_settings(settings.outbox),
                            lambda *a: _note("email", "x"), concurrency=2)  # fmt: skip
    run = asyncio.create_task(dispatcher.run_once(NOW))
    try:
        await asyncio.wait_for(mail.sent.wait(), 2.0)
    finally:
        stuck.release.set()
        report = await run
    assert report.outcomes == {"delivered": 5}
