"""What the plant is told: shelving and the final state on the wire (routing, pure), the
per-gateway alert index (``IndexBook``, pure), and the index kept and rebuilt across a cloud
restart through a real Mosquitto."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from alerts_support import condition
from hypothesis import given
from hypothesis import strategies as st

from cloud_service.alerts.lifecycle import Lifecycle, LifecyclePolicy
from cloud_service.alerts.outbox import OutboxPolicy
from cloud_service.alerts.plant_index import IndexBook
from cloud_service.alerts.records import AlertEvent
from cloud_service.alerts.routing import Router
from cloud_service.alerts.service import AlertService
from cloud_service.alerts.settings import AlertSettings
from firmware_sim.stack import MosquittoServer
from shared.codec import MessageDecoder, encode
from shared.messages import (
    Alert,
    AlertAck,
    AlertIndex,
    AlertState,
    GatewayState,
    Severity,
    State,
)
from shared.topics import Channel, TopicScheme
from tests.cloud_service.alerts.link_support import cloud, index_of, publish_retained, retained

NOW = 1_790_000_000_000
MIN = 60_000
SETTINGS = AlertSettings()


def mqtt_alerts(router: Router, events: list[AlertEvent], now: int) -> list[tuple[str, Alert]]:
    decoder = MessageDecoder(Alert)
    return [(n.kind, decoder.decode(n.payload)) for n in router.route(events, now)
            if n.channel == "mqtt"]  # fmt: skip


# -- routing (pure) -------------------------------------------------------------------------


def test_shelving_and_unshelving_reach_the_plant_with_the_expiry() -> None:
    router = Router(SETTINGS, OutboxPolicy.from_settings(SETTINGS.outbox))
    lc = Lifecycle(LifecyclePolicy())
    (raised,) = lc.observe([condition()], NOW)
    shelved = lc.shelve(raised.alert.id, until_ms=NOW + 30 * MIN, actor="ana", now_ms=NOW + 1)
    ((kind, wire),) = mqtt_alerts(router, list(shelved), NOW + 1)
    assert (kind, wire.state, wire.shelved_until, wire.closed) == (
        "alert.shelved",
        AlertState.ACTIVE,
        NOW + 30 * MIN,
        False,
    )
    unshelved = lc.unshelve(raised.alert.id, actor="ana", now_ms=NOW + 2)
    ((kind, wire),) = mqtt_alerts(router, list(unshelved), NOW + 2)
    assert (kind, wire.shelved_until) == ("alert.unshelved", None)
    # expiry unshelves too
    lc.shelve(raised.alert.id, until_ms=NOW + 5 * MIN, actor="ana", now_ms=NOW + 3)
    ((kind, wire),) = mqtt_alerts(router, list(lc.tick(NOW + 5 * MIN)), NOW + 5 * MIN)
    assert (kind, wire.shelved_until) == ("alert.unshelved", None)


def test_the_final_state_is_marked_closed_and_a_cleared_unacked_one_is_not() -> None:
    router = Router(SETTINGS, OutboxPolicy.from_settings(SETTINGS.outbox))
    lc = Lifecycle(LifecyclePolicy())
    (raised,) = lc.observe([condition()], NOW)
    cleared = lc.observe([condition(raise_met=False)], NOW + 1)
    ((kind, wire),) = mqtt_alerts(router, list(cleared), NOW + 1)
    assert (kind, wire.state, wire.acked, wire.closed) == (
        "alert.cleared",
        AlertState.CLEARED,
        False,
        False,
    )
    closed = lc.acknowledge(raised.alert.id, actor="ana", now_ms=NOW + 2)
    ((kind, wire),) = mqtt_alerts(router, list(closed), NOW + 2)
    assert (kind, wire.acked, wire.closed) == ("alert.closed", True, True)


# -- the index book (pure) ------------------------------------------------------------------

KEY = ("s1", "gw-1")


@given(st.lists(st.integers(NOW - 10**6, NOW + 10**6), min_size=1, max_size=50))
def test_revisions_only_grow_whatever_the_clock_does(clocks: list[int]) -> None:
    book = IndexBook()
    book.load_index(KEY, AlertIndex(gateway="gw-1", rev=NOW, ts=NOW))
    revs = [book.next_rev(KEY, c) for c in clocks]
    assert all(b > a for a, b in zip([NOW, *revs], revs, strict=False))
    assert all(r >= c for r, c in zip(revs, clocks, strict=True))
    assert book.index(KEY, NOW).rev == revs[-1]


def test_the_book_lists_what_is_retained_and_says_which_indexes_are_stale() -> None:
    book = IndexBook()
    book.load_alert(KEY, "al-1", 7)
    book.load_alert(KEY, "al-legacy", 0)  # published by a cloud that did not number states
    book.load_index(KEY, AlertIndex(gateway="gw-1", rev=7, ts=NOW, alerts={"al-1": 7}))
    book.load_index(("s1", "gw-2"), AlertIndex(gateway="gw-2", rev=3, ts=NOW))
    assert book.seen_gateway(("s1", "gw-3"))  # a gateway known only by its state
    assert not book.seen_gateway(KEY)
    assert book.stale() == [KEY, ("s1", "gw-3")]
    index = book.index(KEY, NOW)
    assert (index.rev, index.alerts) == (7, {"al-1": 7, "al-legacy": 0})
    book.published_index(KEY, index)
    rev = book.next_rev(KEY, NOW)
    book.deleted(KEY, "al-1")
    assert book.index(KEY, NOW + 1) == AlertIndex(
        gateway="gw-1", rev=rev, ts=NOW + 1, alerts={"al-legacy": 0}
    )


# -- through a real broker ------------------------------------------------------------------


def plant_acks(service: AlertService) -> Callable[[AlertAck, str, str], Awaitable[None]]:
    async def on_ack(ack: AlertAck, site: str, gateway: str) -> None:
        await service.acknowledge_from_plant(ack, site=site, gateway=gateway, now_ms=NOW)

    return on_ack


@pytest.mark.integration
async def test_the_index_is_rebuilt_from_the_broker_after_a_cloud_restart(
    mosquitto: MosquittoServer, unique_name: Callable[[str], str], tmp_path: Path
) -> None:
    prefix = f"{unique_name('t')}/v1"
    scheme = TopicScheme(prefix)
    client_id = unique_name("alerts")
    db = tmp_path / "a.db"
    # Left on the broker from before indexes existed: an alert of gw-1, and gw-9's state.
    legacy = Alert(
        id="al-legacy",
        rule="stuck",
        severity=Severity.WARNING,
        state=AlertState.ACTIVE,
        subject="lc1",
        title="old",
        raised=NOW - MIN,
        updated=NOW - MIN,
    )
    await asyncio.to_thread(
        publish_retained, mosquitto, scheme.alert_topic("s1", "gw-1", legacy.id), encode(legacy)
    )
    gw9 = State(state=GatewayState.ONLINE, boot="b1", ts=NOW)
    await asyncio.to_thread(publish_retained, mosquitto, scheme.topic("s1", "gw-9", Channel.STATE),
                            encode(gw9))  # fmt: skip

    async with cloud(mosquitto, prefix, client_id, db, on_ack=plant_acks) as c:
        lc7, lc8 = await c.service.observe([condition("lc7"), condition("lc8")], NOW)
        await c.dispatcher.run_once(NOW)
        first = await index_of(mosquitto, scheme, "s1", "gw-1")
        assert set(first.alerts) == {"al-legacy", lc7.alert.id, lc8.alert.id}
        assert first.alerts["al-legacy"] == 0
        assert (await index_of(mosquitto, scheme, "s1", "gw-9")).alerts == {}  # from its state only

    # Restarted (a new process: nothing in memory), the cloud closes lc8: the index it
    # publishes still lists what it did not touch, rebuilt from the broker.
    async with cloud(mosquitto, prefix, client_id, db, on_ack=plant_acks) as c:
        await c.service.observe([condition("lc8", raise_met=False)], NOW + 1000)
        await c.service.acknowledge(lc8.alert.id, actor="ana", now_ms=NOW + 2000)
        await c.dispatcher.run_once(NOW + 2000)
        after = await index_of(mosquitto, scheme, "s1", "gw-1")
        assert set(after.alerts) == {"al-legacy", lc7.alert.id}
        assert after.rev > max(first.rev, *first.alerts.values())
        assert await asyncio.to_thread(retained, mosquitto, scheme.alert_topic(
            "s1", "gw-1", lc8.alert.id)) is None  # fmt: skip
        state = await asyncio.to_thread(
            retained, mosquitto, scheme.alert_topic("s1", "gw-1", lc7.alert.id)
        )
        assert state is not None
        assert 0 < MessageDecoder(Alert).decode(state).rev <= after.rev
