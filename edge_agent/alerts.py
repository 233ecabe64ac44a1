"""Alerts at the plant: the active alerts the cloud sent, and operator acknowledgements.

Both live in the spool's SQLite file, so they survive a restart: ``alerts`` holds each
active alert as the cloud last described it (a cleared alert is removed), ``alert_acks`` is
the outbox of acknowledgements made here, kept until the broker PUBACKs them (published at
QoS 1 on ``alert-acks``; the cloud's persistent session receives them even if it is down).

Updates are idempotent and ordered by the alert's ``updated`` time: a replayed older version
never overwrites a newer one, and an alert acknowledged here stays acknowledged here even if an
older cloud copy without the ack arrives.

The book keeps both in memory too, so a transaction the spool lost (disk full) or a spool file
replaced after corruption is written again from here (:meth:`persist_all`, :meth:`moved_to`):
an operator's acknowledgement is never lost on the way to the cloud.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import msgspec

from edge_agent.spool.store import SpoolStore
from shared.codec import encode
from shared.messages import Alert, AlertAck, AlertState, Severity

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
    """The alert to keep after ``incoming`` arrives (pure). None: not active (cleared).

    An older update than the one held is ignored; a local acknowledgement is never undone by
    a cloud copy that does not know about it yet.
    """
    if current is not None and incoming.updated < current.updated:
        return current
    if incoming.state is AlertState.CLEARED:
        return None
    if current is not None and current.acked and not incoming.acked:
        return msgspec.structs.replace(incoming, acked=True)
    return incoming


class AlertBook:
    """Active alerts and pending acknowledgements, persisted in the spool's transaction."""

    def __init__(self, store: SpoolStore, *, load: bool = True) -> None:
        self._store = store
        self._alerts: dict[str, Alert] = {}
        self._pending: dict[int, PendingAck] = {}  # key -> ack, oldest first
        self._next_key = 1
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
        """Critical first, then newest first."""
        return sorted(
            self._alerts.values(), key=lambda a: (_SEVERITY_ORDER.get(a.severity, 9), -a.raised)
        )

    def get(self, alert_id: str) -> Alert | None:
        return self._alerts.get(alert_id)

    def apply(self, alert: Alert) -> bool:
        """Take an alert from the cloud; returns whether the active set changed."""
        current = self._alerts.get(alert.id)
        kept = merge_alert(current, alert)
        if kept is current:
            return False
        if kept is None:
            del self._alerts[alert.id]
            self._store.write("DELETE FROM alerts WHERE id = ?", (alert.id,))
        else:
            self._save(kept)
        return True

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
            alert=alert_id, gateway=gateway, operator=operator, ts=now_ms, comment=comment
        )
        if not current.acked:
            self._alerts[alert_id] = msgspec.structs.replace(current, acked=True)
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
