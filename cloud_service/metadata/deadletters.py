"""Dead letters in the metadata store: inserted in one transaction, bounded, listable.

Bounded twice: by rows and by raw bytes kept. When either bound is passed the oldest
letters are evicted in the same transaction and counted (``evicted``), so even eviction is
on record; never a letter the transaction itself stores (its message is acked on the strength
of it: the bound is passed until the next insert instead). A payload longer than
``max_raw_bytes`` keeps its head and its true size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloud_service.deadletter import DeadLetter, StoredDeadLetter
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import dead_letters as t

MAX_DETAIL: Final = 2_000


class SqlDeadLetterStore:
    """:class:`~cloud_service.deadletter.DeadLetterStore` on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_rows: int = 100_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_raw_bytes: int = 1_048_576,
    ) -> None:
        self.engine = engine
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.max_raw_bytes = max_raw_bytes
        self.evicted = 0
        self._backend = engine.dialect.name

    async def put_many(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        rows = [
            {
                "reason": d.reason.value,
                "detail": d.detail[:MAX_DETAIL],
                "topic": d.topic,
                "gateway": d.gateway,
                "received_ms": d.received_ms,
                "item_index": d.index,
                "size": len(d.raw),
                "raw": d.raw[: self.max_raw_bytes],
            }
            for d in letters
        ]
        with guard("dead-letter insert", self._backend):
            async with self.engine.begin() as conn:
                before = (await conn.execute(select(func.max(t.c.id)))).scalar_one()
                await conn.execute(insert(t), rows)
                if before is not None:
                    self.evicted += await self._prune(conn, int(before))

    async def _prune(self, conn: AsyncConnection, older_than: int) -> int:
        """Evict the oldest letters with ids up to ``older_than`` until within bounds."""
        count, kept_bytes = (
            await conn.execute(
                select(func.count(), func.coalesce(func.sum(func.length(t.c.raw)), 0))
            )
        ).one()
        evicted = 0
        if count > self.max_rows:
            oldest = select(t.c.id).order_by(t.c.id).limit(count - self.max_rows).scalar_subquery()
            cutoff = select(func.max(t.c.id)).where(t.c.id.in_(oldest))
            last = min((await conn.execute(cutoff)).scalar_one(), older_than)
            evicted += (await conn.execute(delete(t).where(t.c.id <= last))).rowcount
            kept_bytes = (
                await conn.execute(select(func.coalesce(func.sum(func.length(t.c.raw)), 0)))
            ).scalar_one()
        if kept_bytes > self.max_bytes:
            cumulative = (
                select(t.c.id, func.sum(func.length(t.c.raw)).over(order_by=t.c.id).label("cum"))
            ).subquery()
            last = (
                await conn.execute(
                    select(func.min(cumulative.c.id)).where(
                        cumulative.c.cum >= kept_bytes - self.max_bytes
                    )
                )
            ).scalar_one()
            if last is not None:
                last = min(last, older_than)
                evicted += (await conn.execute(delete(t).where(t.c.id <= last))).rowcount
        return evicted

    async def recent(
        self,
        *,
        reason: str | None = None,
        gateway: str | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[StoredDeadLetter]:
        q = select(t).order_by(t.c.id.desc()).limit(max(1, min(limit, 10_000)))
        if reason is not None:
            q = q.where(t.c.reason == reason)
        if gateway is not None:
            q = q.where(t.c.gateway == gateway)
        if before_id is not None:
            q = q.where(t.c.id < before_id)
        with guard("dead-letter list", self._backend):
            async with self.engine.connect() as conn:
                rows = (await conn.execute(q)).mappings().all()
        return [
            StoredDeadLetter(
                id=r["id"],
                reason=r["reason"],
                detail=r["detail"],
                topic=r["topic"],
                gateway=r["gateway"],
                received_ms=r["received_ms"],
                index=r["item_index"],
                size=r["size"],
                raw=bytes(r["raw"]),
            )
            for r in rows
        ]

    async def count_by_reason(self) -> dict[str, int]:
        q = select(t.c.reason, func.count()).group_by(t.c.reason)
        with guard("dead-letter count", self._backend):
            async with self.engine.connect() as conn:
                return {reason: n for reason, n in (await conn.execute(q)).all()}
