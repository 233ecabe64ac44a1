"""Alerts at the plant: what the book keeps (pure merge and index reconciliation, with a
property over the cloud's own index book), and the book on a real SQLite spool."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud_service.alerts.plant_index import IndexBook
from edge_agent.alerts import (
    AlertBook,
    UnknownAlertError,
    closed_copy,
    gone_by_index,
    merge_alert,
    shelved,
)
from edge_agent.andon import light_wanted
from edge_agent.spool.store import SpoolStore
from shared.messages import Alert, AlertIndex, AlertState, Severity

T0 = 1_790_000_000_000
CRITICAL = [Severity.CRITICAL]


def alert(alert_id: str = "al-1", **kw: Any) -> Alert:
    values: dict[str, Any] = {
        "id": alert_id,
        "rule": "stockout-risk",
        "severity": Severity.CRITICAL,
        "state": AlertState.ACTIVE,
        "subject": "SKU-1",
        "title": "Stock-out of SKU-1",
        "raised": T0,
        "updated": T0,
    }
    values.update(kw)
    return Alert(**values)


# -- merge (pure) -------------------------------------------------------------------------


def test_a_cleared_unacknowledged_alert_is_kept_and_its_final_state_removes_it() -> None:
    active = alert()
    cleared = alert(state=AlertState.CLEARED, updated=T0 + 1)
    assert merge_alert(active, cleared) == cleared  # return to normal, unacknowledged
    assert merge_alert(cleared, alert(state=AlertState.CLEARED, acked=True, updated=T0 + 2)) is None
    assert merge_alert(cleared, closed_copy(cleared)) is None  # closed without an ack needed
    assert merge_alert(None, closed_copy(cleared)) is None


def test_older_updates_and_local_acks_as_before() -> None:
    newer = alert(updated=T0 + 5)
    assert merge_alert(newer, alert(updated=T0 + 1)) is newer
    acked_here = alert(acked=True, updated=T0 + 1)
    merged = merge_alert(acked_here, alert(updated=T0 + 2, title="Still out"))
    assert merged is not None
    assert (merged.title, merged.acked) == ("Still out", True)
    # cleared, and acknowledged here: closed as far as the plant is concerned
    assert merge_alert(acked_here, alert(state=AlertState.CLEARED, updated=T0 + 2)) is None


def test_a_local_ack_does_not_carry_over_to_a_later_activation(book: AlertBook) -> None:
    # acknowledged here while cleared; the cloud, not knowing yet, sees it active again: the
    # new activation is nobody's acknowledged alarm (and the cloud refuses the old ack for it)
    book.apply(alert(activated=T0))
    book.apply(alert(state=AlertState.CLEARED, updated=T0 + 1, activated=T0))
    ack = book.acknowledge("al-1", gateway="gw", operator="ana", comment="", now_ms=T0 + 2)
    assert ack.activated == T0  # the activation the operator saw goes with the ack
    again = alert(updated=T0 + 5, activated=T0 + 5)
    merged = merge_alert(alert(acked=True, updated=T0 + 1, activated=T0), again)
    assert merged is again
    assert not merged.acked
    # the same activation, updated, or one from a cloud that names none: the ack stands
    same = merge_alert(alert(acked=True, updated=T0 + 1, activated=T0), alert(updated=T0 + 6))
    assert same is not None
    assert same.acked  # a copy without ``activated`` (an older cloud): as before
    kept = merge_alert(
        alert(acked=True, updated=T0 + 1, activated=T0), alert(updated=T0 + 6, activated=T0)
    )
    assert kept is not None
    assert kept.acked
    book._store.close()


def test_shelving_is_kept_and_keeps_the_andon_dark_until_it_ends() -> None:
    shelved_alert = alert(shelved_until=T0 + 60_000, updated=T0 + 1)
    kept = merge_alert(alert(), shelved_alert)
    assert kept == shelved_alert
    assert shelved(shelved_alert)
    assert shelved(shelved_alert, T0 + 59_999)
    assert not shelved(shelved_alert, T0 + 60_000)
    assert not light_wanted([shelved_alert], CRITICAL, unacknowledged_only=False)
    assert not light_wanted([shelved_alert], CRITICAL, unacknowledged_only=False, now_ms=T0)
    # the shelving expired and the cloud's "unshelved" has not arrived yet: lit again
    assert light_wanted([shelved_alert], CRITICAL, unacknowledged_only=False, now_ms=T0 + 60_000)
    unshelved = merge_alert(kept, alert(updated=T0 + 2))
    assert unshelved is not None
    assert not shelved(unshelved)
    assert light_wanted([unshelved], CRITICAL, unacknowledged_only=False)
    # cleared (awaiting an ack) never lights it
    rtn = alert(state=AlertState.CLEARED)
    assert not light_wanted([rtn], CRITICAL, unacknowledged_only=False)


def test_the_index_removes_what_it_does_not_list_unless_what_is_held_is_newer() -> None:
    held = [alert("al-old", rev=5), alert("al-listed", rev=6), alert("al-new", rev=9)]
    index = AlertIndex(gateway="gw", rev=7, ts=T0, alerts={"al-listed": 6})
    assert gone_by_index(held, index) == ["al-old"]
    legacy = alert("al-legacy")  # from a cloud that did not number states: rev 0
    assert gone_by_index([legacy], AlertIndex(gateway="gw", rev=0, ts=T0)) == ["al-legacy"]


# -- the plant converges on the cloud's open set (property) -------------------------------

# One step of the cloud for one gateway: raise, update, clear, ack, shelve or close an alert.
_op = st.tuples(
    st.sampled_from(["raise", "update", "clear", "ack", "shelve", "close"]),
    st.integers(0, 4),
)


def _cloud_run(
    ops: list[tuple[str, int]],
) -> tuple[list[tuple[str, Any]], dict[str, Alert], AlertIndex | None]:
    """Publish ``ops`` as :class:`MqttAlertLink` does (per-alert state, then the index), from
    the same :class:`IndexBook`. Returns the stream of publications, what stays retained
    per alert, and the retained index."""
    book = IndexBook()
    key = ("s1", "gw")
    now = T0
    open_: dict[str, Alert] = {}
    retained: dict[str, Alert] = {}
    index: AlertIndex | None = None
    stream: list[tuple[str, Any]] = []
    for kind, n in ops:
        now += 1_000
        aid = f"al-{n}"
        current = open_.get(aid)
        if kind == "raise" and current is None:
            nxt = alert(aid, raised=now, updated=now)
        elif current is None or kind == "raise":
            continue
        elif kind == "update":
            nxt = alert(aid, state=current.state, acked=current.acked, updated=now,
                        shelved_until=current.shelved_until, raised=current.raised)  # fmt: skip
        elif kind == "clear":
            nxt = alert(aid, state=AlertState.CLEARED, acked=current.acked, updated=now,
                        raised=current.raised)  # fmt: skip
        elif kind == "ack":
            nxt = alert(aid, state=current.state, acked=True, updated=now, raised=current.raised)
        elif kind == "shelve":
            nxt = alert(aid, state=current.state, acked=current.acked, updated=now,
                        shelved_until=now + 60_000, raised=current.raised)  # fmt: skip
        else:
            nxt = closed_copy(alert(aid, state=AlertState.CLEARED, updated=now,
                                    raised=current.raised))  # fmt: skip
        if nxt.state is AlertState.CLEARED and nxt.acked:
            nxt = closed_copy(nxt)
        rev = book.next_rev(key, now)
        nxt = msgspec.structs.replace(nxt, rev=rev)
        if nxt.closed:
            open_.pop(aid)
            retained.pop(aid, None)
            book.deleted(key, aid)
            stream += [("alert", nxt), ("deleted", aid)]
        else:
            open_[aid] = nxt
            retained[aid] = nxt
            book.retained_state(key, aid, rev)
            stream.append(("alert", nxt))
        index = book.index(key, now)
        book.published_index(key, index)
        stream.append(("index", index))
    return stream, retained, index


def _deliver(held: dict[str, Alert], message: tuple[str, Any]) -> None:
    """What the publisher and the book do with one message (pure model)."""
    kind, body = message
    if kind == "alert":
        kept = merge_alert(held.get(body.id), body)
        if kept is None:
            held.pop(body.id, None)
        else:
            held[body.id] = kept
    elif kind == "deleted":
        held.pop(body, None)
    else:
        for gone in gone_by_index(held.values(), body):
            held.pop(gone)


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=40), st.data())
def test_a_gateway_that_was_away_converges_on_the_cloud_s_open_set(
    ops: list[tuple[str, int]], data: st.DataObject
) -> None:
    stream, retained, index = _cloud_run(ops)
    # The gateway saw a prefix of the stream live, then went away.
    seen = data.draw(st.integers(0, len(stream)), label="seen live")
    held: dict[str, Alert] = {}
    for message in stream[:seen]:
        _deliver(held, message)
    # It reconnects: the broker replays what is retained, in any order.
    replay: list[tuple[str, Any]] = [("alert", a) for a in retained.values()]
    if index is not None:
        replay.append(("index", index))
    for message in data.draw(st.permutations(replay), label="replay order"):
        _deliver(held, message)
    if index is None:  # nothing was ever published
        assert held == {}
        return
    assert set(held) == set(retained)
    for aid, a in retained.items():
        assert (held[aid].state, held[aid].updated, held[aid].shelved_until) == (
            a.state,
            a.updated,
            a.shelved_until,
        )


# -- the book on a real spool ---------------------------------------------------------------


@pytest.fixture
def book(tmp_path: Path) -> Iterator[AlertBook]:
    store = SpoolStore(tmp_path / "spool.db")
    yield AlertBook(store)
    store.close()


def reopened(book: AlertBook) -> AlertBook:
    """The book as a restarted agent loads it from the spool file."""
    store = book._store
    assert store.commit()
    store.close()
    return AlertBook(SpoolStore(store.path))


def test_a_cleared_unacknowledged_alert_can_be_acknowledged_at_the_plant(
    book: AlertBook,
) -> None:
    book.apply(alert(rev=1))  # from a cloud that numbers its states (and sends an index)
    book.apply(alert(state=AlertState.CLEARED, updated=T0 + 1, rev=2))
    assert [(a.id, a.state) for a in book.active()] == [("al-1", AlertState.CLEARED)]
    book.acknowledge("al-1", gateway="gw", operator="ana", comment="", now_ms=T0 + 2)
    assert [p.alert for p in book.pending_acks()] == ["al-1"]
    again = reopened(book)
    assert [(a.id, a.state, a.acked) for a in again.active()] == [
        ("al-1", AlertState.CLEARED, True)
    ]
    # The broker PUBACKs the ack; the cloud closes the alert: gone, and nothing is dropped.
    (pending,) = again.pending_acks()
    again.ack_delivered(pending.row)
    again.apply(closed_copy(alert(state=AlertState.CLEARED, acked=True, updated=T0 + 3, rev=3)))
    assert again.active() == []
    assert again.acks_obsolete == 0
    again._store.close()


def test_an_ack_made_offline_for_an_alert_that_closed_meanwhile_is_dropped_and_counted(
    book: AlertBook,
) -> None:
    book.apply(alert(rev=3))
    book.apply(alert("al-2", rev=4))
    book.acknowledge("al-1", gateway="gw", operator="ana", comment="", now_ms=T0 + 2)
    book = reopened(book)
    index = AlertIndex(gateway="gw", rev=9, ts=T0, alerts={"al-2": 4})
    for gone in gone_by_index(book.active(), index):
        held = book.get(gone)
        assert held is not None
        book.apply(closed_copy(held))
    assert [a.id for a in book.active()] == ["al-2"]
    assert book.pending_acks() == []
    assert book.acks_obsolete == 1
    again = reopened(book)
    assert [a.id for a in again.active()] == ["al-2"]
    assert again.pending_acks() == []
    with pytest.raises(UnknownAlertError):
        again.acknowledge("al-1", gateway="gw", operator="ana", comment="", now_ms=T0 + 3)
    again._store.close()


def test_open_alerts_are_listed_active_first_shelved_last(book: AlertBook) -> None:
    book.apply(alert("al-rtn", state=AlertState.CLEARED))
    book.apply(alert("al-shelved", shelved_until=T0 + 1))
    book.apply(alert("al-warn", severity=Severity.WARNING))
    book.apply(alert("al-crit"))
    assert [a.id for a in book.active()] == ["al-crit", "al-warn", "al-rtn", "al-shelved"]


def test_from_a_cloud_without_revisions_an_acked_cleared_alert_is_closed_here(
    book: AlertBook,
) -> None:
    # an older cloud sends no index: had its final state been missed while offline, a cleared
    # alert acknowledged here would have stayed on the plant's list for ever
    book.apply(alert(rev=0))
    book.apply(alert(state=AlertState.CLEARED, updated=T0 + 1, rev=0))
    book.acknowledge("al-1", gateway="gw", operator="ana", comment="", now_ms=T0 + 2)
    assert book.active() == []
    assert [p.alert for p in book.pending_acks()] == ["al-1"]  # still goes to the cloud
    again = reopened(book)
    assert again.active() == []
    assert [p.alert for p in again.pending_acks()] == ["al-1"]
    again._store.close()


def test_states_are_ordered_by_revision_when_both_carry_one() -> None:
    # the cloud's clock stepped back: a newer state carries an older ``updated``
    held = alert(updated=T0 + 10_000, rev=5)
    newer = alert(updated=T0, rev=6, acked=True)
    assert merge_alert(held, newer) is newer
    assert merge_alert(newer, held) is newer  # and the older revision is ignored
    # without revisions, as before: by ``updated``
    assert merge_alert(alert(updated=T0 + 5), alert(updated=T0 + 1)) == alert(updated=T0 + 5)
