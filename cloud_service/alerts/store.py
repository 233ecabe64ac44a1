"""Persistence of the alert subsystem on SQLAlchemy 2 async (SQLite by default, PostgreSQL).

Three tables of the metadata store (declared in ``metadata.schema``, built by migration
``0004``): ``alert_events``, the transition log (who, when, why; its ids are the
SSE event ids); ``alert_tracks``, the lifecycle state to restore after a restart; and
``alert_outbox``, every notification, written before it is sent. :meth:`SqlAlertStore.record`
writes all three for one lifecycle step in one transaction, so a crash leaves either the
step with all its notifications, or none of it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from sqlalchemy import (
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cloud_service.alerts.lifecycle import SavedTrack
from cloud_service.alerts.outbox import Notification, Outcome, Status, Summary
from cloud_service.alerts.records import AlertEvent, AlertKey
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import alert_events, alert_outbox, alert_tracks, metadata
from shared.messages import Severity

ALERT_TABLES: Final = (alert_events, alert_tracks, alert_outbox)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    type: str
    site: str
    body: str


def create_sqlite_engine(
    path: Path, synchronous: Literal["NORMAL", "FULL"] = "FULL"
) -> AsyncEngine:
    """An aiosqlite engine with WAL, a busy timeout and the given ``synchronous`` level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    return engine


async def create_tables(engine: AsyncEngine) -> None:
    """The alert tables alone, on an engine without Alembic (tests, tools); the service's
    metadata store creates them by migration (``0004``)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: metadata.create_all(c, tables=list(ALERT_TABLES)))


_TRACK_DECODER: Final = msgspec.json.Decoder(SavedTrack)
_ENCODER: Final = msgspec.json.Encoder()


class SqlAlertStore:
    """Event log, lifecycle state and outbox (implements ``outbox.OutboxStore``).

    A database that is down or unreachable raises ``MetadataUnavailable`` (retryable; the API
    answers 503 with ``Retry-After``), any other database failure ``MetadataError``.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def _guard(self, operation: str) -> contextlib.AbstractContextManager[None]:
        return guard(operation, self.engine.dialect.name)

    async def record(
        self,
        events: Sequence[AlertEvent],
        tracks: Sequence[tuple[AlertKey, SavedTrack | None]],
        notifications: Sequence[Notification],
    ) -> list[int]:
        """One lifecycle step, atomically; returns the new event ids in order."""
        ids: list[int] = []
        with self._guard("alert record"):
            async with self.engine.begin() as conn:
                for e in events:
                    result = await conn.execute(insert(alert_events).values(**_event_row(e)))
                    pk = result.inserted_primary_key
                    assert pk is not None
                    ids.append(int(pk[0]))
                for key, saved in tracks:
                    await conn.execute(delete(alert_tracks).where(alert_tracks.c.key == key.text()))
                    if saved is not None:
                        alert_id = saved.alert.id if saved.alert else None
                        row = {
                            "key": key.text(),
                            "alert_id": alert_id,
                            "body": _ENCODER.encode(saved),
                        }
                        await conn.execute(insert(alert_tracks).values(**row))
                await _enqueue(conn, notifications)
        return ids

    async def load_tracks(self) -> list[SavedTrack]:
        with self._guard("alert track load"):
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(alert_tracks.c.body))
                return [_TRACK_DECODER.decode(r.body) for r in rows]

    async def events_after(self, after_id: int, limit: int = 1000) -> list[StoredEvent]:
        q = (
            select(alert_events.c.id, alert_events.c.kind, alert_events.c.site, alert_events.c.body)
            .where(alert_events.c.id > after_id)
            .order_by(alert_events.c.id)
            .limit(limit)
        )
        with self._guard("alert event read"):
            async with self.engine.connect() as conn:
                rows = await conn.execute(q)
                return [StoredEvent(r.id, f"alert.{r.kind}", r.site, r.body) for r in rows]

    async def last_event_id(self) -> int:
        with self._guard("alert event read"):
            async with self.engine.connect() as conn:
                value = await conn.scalar(select(func.max(alert_events.c.id)))
                return int(value or 0)

    # -- outbox ------------------------------------------------------------------------------

    async def enqueue(self, notifications: Sequence[Notification]) -> None:
        with self._guard("alert enqueue"):
            async with self.engine.begin() as conn:
                await _enqueue(conn, notifications)

    async def claim_due(self, now_ms: int, limit: int, lease_ms: int) -> list[Notification]:
        """Take up to ``limit`` due rows for ``lease_ms``; rows of a dead claimant come back."""
        o = alert_outbox.c
        token = secrets.token_hex(8)
        with self._guard("alert outbox claim"):
            async with self.engine.begin() as conn:
                due = (
                    select(o.id)
                    .where(o.status == Status.PENDING, o.next_attempt_ms <= now_ms)
                    .order_by(o.next_attempt_ms)
                    .limit(limit)
                )
                ids = list((await conn.scalars(due)).all())
                if not ids:
                    return []
                await conn.execute(
                    update(alert_outbox)
                    .where(o.id.in_(ids), o.status == Status.PENDING, o.next_attempt_ms <= now_ms)
                    .values(claim=token, next_attempt_ms=now_ms + lease_ms)
                )
                rows = await conn.execute(select(alert_outbox).where(o.claim == token))
                return sorted((_notification(r._mapping) for r in rows), key=lambda n: n.created_ms)

    async def settle(self, outcomes: Sequence[Outcome], summaries: Sequence[Summary] = ()) -> None:
        o = alert_outbox.c
        with self._guard("alert outbox settle"):
            async with self.engine.begin() as conn:
                for s in summaries:
                    await _enqueue(conn, [s.notification])
                    await conn.execute(
                        update(alert_outbox)
                        .where(o.id.in_(s.members), o.status == Status.PENDING)
                        .values(status=Status.SUMMARISED, settled_ms=s.notification.created_ms,
                                claim=None, last_error=f"summarised in {s.notification.id}")
                    )  # fmt: skip
                for x in outcomes:
                    settled = None if x.status == Status.PENDING else x.at_ms
                    await conn.execute(
                        update(alert_outbox)
                        .where(o.id == x.id, o.status == Status.PENDING)
                        .values(status=x.status, attempts=x.attempts,
                                next_attempt_ms=x.next_attempt_ms, last_error=x.error,
                                settled_ms=settled, claim=None)
                    )  # fmt: skip

    async def next_due_ms(self) -> int | None:
        o = alert_outbox.c
        with self._guard("alert outbox read"):
            async with self.engine.connect() as conn:
                value = await conn.scalar(
                    select(func.min(o.next_attempt_ms)).where(o.status == Status.PENDING)
                )
                return None if value is None else int(value)

    async def counts(self) -> dict[str, int]:
        """Notifications by status (for metrics and tests)."""
        o = alert_outbox.c
        with self._guard("alert outbox read"):
            async with self.engine.connect() as conn:
                rows = await conn.execute(select(o.status, func.count()).group_by(o.status))
                return {str(status): int(n) for status, n in rows}

    async def notifications(self, alert_id: str | None = None) -> list[Notification]:
        q = select(alert_outbox).order_by(alert_outbox.c.created_ms)
        if alert_id is not None:
            q = q.where(alert_outbox.c.alert_id == alert_id)
        with self._guard("alert outbox read"):
            async with self.engine.connect() as conn:
                return [_notification(r._mapping) for r in await conn.execute(q)]

    async def prune(self, settled_before_ms: int) -> int:
        """Delete settled notifications older than this; returns how many."""
        o = alert_outbox.c
        with self._guard("alert outbox prune"):
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    delete(alert_outbox).where(o.status != Status.PENDING,
                                               o.settled_ms < settled_before_ms)
                )  # fmt: skip
                return int(result.rowcount)


async def _enqueue(conn: AsyncConnection, notifications: Sequence[Notification]) -> None:
    o = alert_outbox.c
    for n in notifications:
        if n.supersede_key is not None:
            await conn.execute(
                update(alert_outbox)
                .where(o.channel == n.channel, o.recipient == n.recipient,
                       o.supersede_key == n.supersede_key, o.status == Status.PENDING)
                .values(status=Status.SUPERSEDED, settled_ms=n.created_ms, claim=None,
                        last_error=f"superseded by {n.id}")
            )  # fmt: skip
        await conn.execute(insert(alert_outbox).values(**_notification_row(n)))


def _event_row(e: AlertEvent) -> dict[str, Any]:
    a = e.alert
    body = e.body()
    return {
        "alert_id": a.id, "rule": a.key.rule, "site": a.key.site, "subject": a.key.subject,
        "kind": e.kind.value, "at_ms": e.at_ms, "actor": e.actor[:256], "reason": e.reason,
        "severity": a.severity.value, "state": a.state.value, "acked": a.acked, "body": body,
    }  # fmt: skip


def _notification_row(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id, "channel": n.channel, "recipient": n.recipient, "kind": n.kind,
        "payload": n.payload, "created_ms": n.created_ms, "expires_ms": n.expires_ms,
        "next_attempt_ms": n.next_attempt_ms, "attempts": n.attempts,
        "severity": n.severity.value, "alert_id": n.alert_id, "supersede_key": n.supersede_key,
        "status": n.status.value, "last_error": n.last_error,
    }  # fmt: skip


def _notification(r: Any) -> Notification:
    return Notification(
        id=r["id"], channel=r["channel"], recipient=r["recipient"], kind=r["kind"],
        payload=bytes(r["payload"]), created_ms=r["created_ms"], expires_ms=r["expires_ms"],
        next_attempt_ms=r["next_attempt_ms"], attempts=r["attempts"],
        severity=Severity(r["severity"]), alert_id=r["alert_id"],
        supersede_key=r["supersede_key"], status=Status(r["status"]), last_error=r["last_error"],
    )  # fmt: skip
