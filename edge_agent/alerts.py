"""Alerts at the plant: the open alerts the cloud sent, and operator acknowledgements.

Both live in the spool's SQLite file, so they survive a restart: ``alerts`` holds each open
alert as the cloud last described it, ``alert_acks`` is the outbox of acknowledgements made
here, kept until the broker PUBACKs them (published at QoS 1 on ``alert-acks``; the cloud's
persistent session receives them even if it is down).

Open means what ISA-18.2 calls the active set: active (acknowledged or not), and cleared but
not yet acknowledged ("return to normal, unacknowledged": the operator can still acknowledge
it here, and the cloud waits for that). An alert leaves the book when the cloud says it is
gone: its final state (``closed``, or cleared and acknowledged), an empty retained payload on
its topic, or its absence from the gateway's ``AlertIndex`` (:func:`gone_by_index`: how a
gateway that was away when an alert closed learns of it). Shelved alerts stay in the book
(``shelved_until``), out of the andon's sight (:func:`shelved`).

Updates are idempotent and ordered by the alert's ``updated`` time: a replayed older version
never overwrites a newer one, and an alert acknowledged here stays acknowledged here even if an
older cloud copy without the ack arrives. An acknowledgement made here for an alert that the
cloud then reports gone (it closed while the gateway was offline) is dropped, logged and
counted (:attr:`AlertBook.acks_obsolete`): the cloud would refuse it anyway.

The book keeps both in memory too, so a transaction the spool lost (disk full) or a spool file
replaced after corruption is written again from here (:meth:`persist_all`, :meth:`moved_to`):
an operator's acknowledgement is never lost on the way to the cloud.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import msgspec

from edge_agent.spool.store import SpoolStore
from shared.codec import encode
from shared.messages import Alert, AlertAck, AlertIndex, AlertState, Severity

log = logging.getLogger(__name__)

_alert_decoder: Final = msgspec.json.Decoder(Alert)
_SEVERITY_ORDER: Final = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}


class UnknownAlertError(LookupError):
    """An acknowledgement for an alert that is not active here."""

    def __init__(self, alert_id: str) -> None:
        self.alert_id = alert_id
        super().__init__(f"no active alert {alert_id!r}")


@dataclass(frozen=True, slots=True)
class PendingAck:
    row: int  # the book's key for it (the sender confirms by it)
    payload: bytes
    alert: str = ""
    created_ms: int = 0
    db_row: int | None = None  # its row in the spool, once written


def merge_alert(current: Alert | None, incoming: Alert) -> Alert | None:
    """The alert to keep after ``incoming`` arrives (pure). None: gone (closed).

    The final state (``closed``, or cleared and acknowledged) removes it; a cleared but
    unacknowledged alert is kept (it still awaits an acknowledgement). An older update than
    the one held is ignored; a local acknowledgement is never undone by a cloud copy of the same
    activation that does not know about it yet (so a cleared copy of an alert acknowledged here
    removes it: cleared and acknowledged is closed, for the plant; the acknowledgement still
    goes to the cloud). A copy of a later activation (cleared and active again) is not
    acknowledged by it: the cloud refuses that ack too.
    """
    if is_closed(incoming):
        return None
    if current is not None and _older(incoming, current):
        return current
    same_activation = (  # unknown (a cloud that does not name activations): assumed so
        current is None
        or None in (current.activated, incoming.activated)
        or current.activated == incoming.activated
    )
    if current is not None and current.acked and not incoming.acked and same_activation:
        merged = msgspec.structs.replace(incoming, acked=True)
        return None if is_closed(merged) else merged
    return incoming


def _older(incoming: Alert, current: Alert) -> bool:
    """By the cloud's revision when both carry one (it only grows, whatever the cloud's clock
    did), else by ``updated`` (a cloud that does not number its states)."""
    if incoming.rev and current.rev:
        return incoming.rev < current.rev
    return incoming.updated < current.updated


def is_closed(alert: Alert) -> bool:
    """The cloud's final state of an alert: it is no longer in the active set."""
    return alert.closed or (alert.state is AlertState.CLEARED and alert.acked)


def shelved(alert: Alert, now_ms: int | None = None) -> bool:
    """Shelved in the cloud (at ``now_ms``: until its ``shelved_until``; None: at all)."""
    until = alert.shelved_until
    return until is not None and (now_ms is None or now_ms < until)


def gone_by_index(held: Iterable[Alert], index: AlertIndex) -> list[str]:
    """The ids of ``held`` alerts that ``index`` says are no longer open (pure).

    An alert the index does not list is gone when the index is at least as new as the state
    held (its ``rev`` is at most the index's); a state newer than the index is kept, and the
    index that follows it will settle it.
    """
    return [a.id for a in held if a.id not in index.alerts and a.rev <= index.rev]


def closed_copy(alert: Alert) -> Alert:
    """``alert`` as the cloud's final state (for a removal the cloud signalled otherwise)."""
    return msgspec.structs.replace(alert, closed=True)


class AlertBook:
    """Active alerts and pending acknowledgements, persisted in the spool's transaction."""

    def __init__(self, store: SpoolStore, *, load: bool = True) -> None:
        self._store = store
        self._alerts: dict[str, Alert] = {}
        self._pending: dict[int, PendingAck] = {}  # key -> ack, oldest first
        self._next_key = 1
        self.acks_obsolete = 0  # acks made here for alerts that closed before they arrived
        if not load:
            return
        for (payload,) in store.query("SELECT payload FROM alerts"):
            alert = _alert_decoder.decode(payload)
            self._alerts[alert.id] = alert
        for row, alert_id, payload, created in store.query(
            "SELECT id, alert, payload, created_ms FROM alert_acks ORDER BY id"
        ):
            key = int(row)
            self._pending[key] = PendingAck(key, bytes(payload), alert_id, int(created), key)
            self._next_key = key + 1

    def moved_to(self, store: SpoolStore) -> AlertBook:
        """This book's alerts and pending acknowledgements, written into ``store`` (a fresh
        spool file that replaced a corrupt one)."""
        book = AlertBook(store, load=False)
        book._alerts = dict(self._alerts)
        book._pending = dict(self._pending)
        book._next_key = self._next_key
        book.acks_obsolete = self.acks_obsolete
        book.persist_all()
        return book

    def persist_all(self) -> None:
        """Write the whole book into the pending transaction (after one was lost)."""
        self._store.write("DELETE FROM alerts")
        for alert in self._alerts.values():
            self._save(alert)
        self._store.write("DELETE FROM alert_acks")
        for ack in list(self._pending.values()):
            self._write_ack(ack)

    def saved(self) -> None:
        """The pending transaction was committed (nothing to do: the book is the truth)."""

    def active(self) -> list[Alert]:
        """The open alerts: active before cleared, shelved last; critical first, then newest."""
        return sorted(
            self._alerts.values(),
            key=lambda a: (
                shelved(a),
                a.state is not AlertState.ACTIVE,
                _SEVERITY_ORDER.get(a.severity, 9),
                -a.raised,
            ),
        )

    def get(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def apply(self, alert: Alert) -> bool:
        """Take an alert state from the cloud; returns whether the book changed."""
        current = self._alerts.get(alert.id)
        kept = merge_alert(current, alert)
        if kept is current:
            return False
        if kept is None:
            del self._alerts[alert.id]
            self._store.write("DELETE FROM alerts WHERE id = ?", (alert.id,))
            if is_closed(alert):  # the cloud says it is gone (not just acknowledged here)
                self._drop_acks_of(alert.id)
        else:
            self._save(kept)
        return True

    def _drop_acks_of(self, alert_id: str) -> None:
        """The cloud says ``alert_id`` is gone: its acknowledgements not yet delivered are
        moot (the cloud refuses acks of closed alerts); drop them, loudly."""
        moot = [ack for ack in self._pending.values() if ack.alert == alert_id]
        for ack in moot:
            self.ack_delivered(ack.row)
        if moot:
            self.acks_obsolete += len(moot)
            log.warning(
                "alert %s closed in the cloud before %d acknowledgement(s) made here reached it"
                " (it closed while the gateway was offline, or was acknowledged elsewhere);"
                " dropped",
                alert_id,
                len(moot),
            )

    def mark_acked(self, alert_id: str) -> bool:
        """The cloud says the alert was acknowledged elsewhere (a ``cmd`` mirror)."""
        current = self._alerts.get(alert_id)
        if current is None or current.acked:
            return False
        self._save(msgspec.structs.replace(current, acked=True))
        return True

    def acknowledge(
        self, alert_id: str, *, gateway: str, operator: str, comment: str, now_ms: int
    ) -> AlertAck:
        """An operator acknowledged ``alert_id`` here: mark it, queue the ack for the cloud."""
        ack = self.take_ack(
            alert_id, gateway=gateway, operator=operator, comment=comment, now_ms=now_ms
        )
        self.write_unsaved()
        return ack

    def take_ack(
        self, alert_id: str, *, gateway: str, operator: str, comment: str, now_ms: int
    ) -> AlertAck:
        """:meth:`acknowledge` in memory only (pending); :meth:`write_unsaved` stores it."""
        current = self._alerts.get(alert_id)
        if current is None:
            raise UnknownAlertError(alert_id)
        ack = AlertAck(
            alert=alert_id, gateway=gateway, operator=operator, ts=now_ms, comment=comment,
            activated=current.activated,
        )  # fmt: skip
        if not current.acked:
            self._alerts[alert_id] = msgspec.structs.replace(current, acked=True)
        if current.state is AlertState.CLEARED and not current.rev:
            # from a cloud that sends no index: cleared and acknowledged is closed here, and
            # nothing would ever remove it if the cloud's final state is missed while offline
            self._alerts.pop(alert_id)  # (its spool row goes with write_unsaved)
        self._pending[self._next_key] = PendingAck(self._next_key, encode(ack), alert_id, now_ms)
        self._next_key += 1
        return ack

    def write_unsaved(self) -> None:
        """Write the acknowledgements not yet in the spool, and their alerts."""
        for ack in [a for a in self._pending.values() if a.db_row is None]:
            self._write_ack(ack)
            alert = self._alerts.get(ack.alert)
            if alert is not None:
                self._save(alert)
            else:  # closed here by the acknowledgement (see take_ack)
                self._store.write("DELETE FROM alerts WHERE id = ?", (ack.alert,))

    def _write_ack(self, ack: PendingAck) -> None:
        cur = self._store.write(
            "INSERT INTO alert_acks(alert, payload, created_ms) VALUES(?, ?, ?)",
            (ack.alert, ack.payload, ack.created_ms),
        )
        self._pending[ack.row] = PendingAck(
            ack.row, ack.payload, ack.alert, ack.created_ms, int(cur.lastrowid or 0)
        )

    def pending_acks(self) -> list[PendingAck]:
        return list(self._pending.values())

    def ack_delivered(self, row: int) -> None:
        ack = self._pending.pop(row, None)
        if ack is not None and ack.db_row is not None:
            self._store.write("DELETE FROM alert_acks WHERE id = ?", (ack.db_row,))

    def _save(self, alert: Alert) -> None:
        self._alerts[alert.id] = alert
        self._store.write(
            "INSERT INTO alerts(id, payload, updated_ms) VALUES(?, ?, ?) ON CONFLICT(id) DO"
            " UPDATE SET payload = excluded.payload, updated_ms = excluded.updated_ms",
            (alert.id, encode(alert), alert.updated),
        )
