"""Gateway and signal registry and sequence-tracker state in the metadata store.

Births and states are written in the write cycle of the message that carried them, before
its PUBACK. Last-seen times, health status and sequence state change with every batch, so
the shell saves them in periodic bulk statements instead (losing a few seconds of them in a
crash costs nothing: the next batch or ``first_unacked`` restores them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, case, null, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.schema import Table

from cloud_service.ingest.records import BirthRecord, GatewayActivity, SignalActivity, StateRecord
from cloud_service.ingest.sequence import StreamSnapshot as StreamRow
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import gateways, sequence_streams, signals
from shared.messages import Birth, GatewayState, SignalKind, SignalSpec

_INT64_MAX = 2**63 - 1


class SqlRegistry:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._backend = engine.dialect.name

    # -- writes ---------------------------------------------------------------------------
    async def record(self, births: Sequence[BirthRecord], states: Sequence[StateRecord]) -> None:
        """Births and states of one write cycle, in one transaction.

        Each applies only if it is not older than what the row holds, so a write that reaches
        the store late (two writes in flight, several workers) cannot put an older state or
        birth back. A birth by its receive time (the cloud's clock: a gateway's own clock may
        restart behind, before NTP); a new boot's birth starts its states afresh. A state only
        for the boot the row holds (or before any birth), by its ``ts``: a late state of an
        earlier boot never applies. One exception: the MQTT will (*offline*) of a boot is
        stamped when the gateway connects, before the *online* it overrides, so an *offline*
        of the boot the row holds replaces that boot's *online* whatever its ``ts``.
        """
        if not births and not states:
            return
        with guard("registry record", self._backend):
            async with self.engine.begin() as conn:
                for b in births:
                    await self._birth(conn, b)
                for s in states:
                    await self._state(conn, s)

    def _insert(self, table: Table, row: dict[str, Any]) -> Any:
        dialect = postgresql if self._backend == "postgresql" else sqlite
        return dialect.insert(table).values(row)

    async def _state(self, conn: AsyncConnection, rec: StateRecord) -> None:
        row = {
            "site": rec.site,
            "gateway": rec.gateway,
            "state": rec.state.state.value,
            "state_ms": rec.state.ts,
        }
        stmt = self._insert(gateways, row)
        new, old = stmt.excluded, gateways.c
        offline, online = GatewayState.OFFLINE.value, GatewayState.ONLINE.value
        later = or_(old.state_ms.is_(None), new.state_ms >= old.state_ms)
        newer = or_(
            and_(old.boot.is_(None), later),
            and_(
                old.boot == rec.state.boot,
                or_(later, and_(new.state == offline, old.state == online)),
            ),
        )
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["site", "gateway"],
                set_={"state": new.state, "state_ms": new.state_ms},
                where=newer,
            )
        )

    async def _birth(self, conn: AsyncConnection, rec: BirthRecord) -> None:
        b = rec.birth
        row = {
            "site": rec.site,
            "gateway": b.gateway,
            "boot": b.boot,
            "agent_version": b.agent_version,
            "config_hash": b.config_hash,
            "started_ms": b.started_ms,
            "birth_ms": rec.received_ms,
            # each count fits the contract's int64, their sum need not: capped, not a crash
            "dropped": min(sum(b.dropped.values()), _INT64_MAX),
        }
        stmt = self._insert(gateways, row)
        new, old = stmt.excluded, gateways.c
        newer = or_(old.birth_ms.is_(None), new.birth_ms >= old.birth_ms)
        fresh = {c: new[c] for c in row if c not in ("site", "gateway")}
        # a new boot's states start afresh (its clock may be behind the last boot's)
        fresh["state_ms"] = case((old.boot == new.boot, old.state_ms), else_=null())
        upsert = stmt.on_conflict_do_update(
            index_elements=["site", "gateway"], set_=fresh, where=newer
        ).returning(old.site)
        if (await conn.execute(upsert)).first() is None:
            return  # an older birth than the one recorded: its catalog is older too
        await conn.execute(
            update(signals)
            .where(and_(signals.c.site == rec.site, signals.c.gateway == b.gateway))
            .values(active=False)
        )
        rows = [
            {
                "site": rec.site,
                "gateway": b.gateway,
                "signal": s.id,
                "kind": s.kind.value,
                "unit": s.unit,
                "sku": s.sku,
                "location": s.location,
                "line": s.line,
                "period_s": s.period_s,
                "description": s.description,
                "active": True,
            }
            for s in b.signals
        ]
        await self._upsert(conn, signals, rows, ("site", "gateway", "signal"))

    async def save_activity(
        self,
        gateway_rows: Sequence[GatewayActivity],
        signal_rows: Sequence[SignalActivity],
        streams: Sequence[StreamRow],
    ) -> None:
        """Periodic bulk save of last-seen times, health status and sequence state."""
        if not (gateway_rows or signal_rows or streams):
            return
        with guard("registry save", self._backend):
            async with self.engine.begin() as conn:
                await self._upsert(
                    conn,
                    gateways,
                    [
                        {"site": g.site, "gateway": g.gateway, "last_seen_ms": g.last_seen_ms}
                        for g in gateway_rows
                    ],
                    ("site", "gateway"),
                )
                if signal_rows:
                    stmt = (
                        update(signals)
                        .where(
                            and_(
                                signals.c.site == bindparam("k_site"),
                                signals.c.gateway == bindparam("k_gateway"),
                                signals.c.signal == bindparam("k_signal"),
                            )
                        )
                        .values(
                            last_seen_ms=bindparam("v_seen"),
                            last_ts_ms=bindparam("v_ts"),
                            status=bindparam("v_status"),
                        )
                    )
                    await conn.execute(
                        stmt,
                        [
                            {
                                "k_site": s.site,
                                "k_gateway": s.gateway,
                                "k_signal": s.signal,
                                "v_seen": s.last_seen_ms,
                                "v_ts": s.last_ts_ms,
                                "v_status": s.status,
                            }
                            for s in signal_rows
                        ],
                    )
                await self._upsert(
                    conn,
                    sequence_streams,
                    [
                        {
                            "gateway": s.gateway,
                            "boot": s.boot,
                            "contiguous": s.contiguous,
                            "pending": " ".join(map(str, s.pending)),
                            "duplicates": s.duplicates,
                            "gaps": s.gaps,
                            "filled": s.filled,
                            "updated_ms": s.updated_ms,
                        }
                        for s in streams
                    ],
                    ("gateway", "boot"),
                )

    async def _upsert(
        self, conn: AsyncConnection, table: Table, rows: list[dict[str, Any]], keys: tuple[str, ...]
    ) -> None:
        if not rows:
            return
        dialect = postgresql if self._backend == "postgresql" else sqlite
        stmt = dialect.insert(table)
        columns = [c for c in rows[0] if c not in keys]
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
        )
        await conn.execute(stmt, rows)

    # -- reads ----------------------------------------------------------------------------
    async def load_births(self) -> list[BirthRecord]:
        """The registry as births, to warm the catalog and health state at start-up."""
        with guard("registry load", self._backend):
            async with self.engine.connect() as conn:
                gws = (await conn.execute(select(gateways))).mappings().all()
                sigs = (
                    (await conn.execute(select(signals).where(signals.c.active))).mappings().all()
                )
        by_gateway: dict[tuple[str, str], list[SignalSpec]] = {}
        for s in sigs:
            spec = SignalSpec(
                id=s["signal"],
                kind=SignalKind(s["kind"]),
                unit=s["unit"],
                sku=s["sku"],
                location=s["location"],
                line=s["line"],
                period_s=s["period_s"],
                description=s["description"],
            )
            by_gateway.setdefault((s["site"], s["gateway"]), []).append(spec)
        out: list[BirthRecord] = []
        for g in gws:
            if g["boot"] is None:  # telemetry seen, never a birth
                continue
            birth = Birth(
                gateway=g["gateway"],
                site=g["site"],
                boot=g["boot"],
                agent_version=g["agent_version"],
                config_hash=g["config_hash"],
                started_ms=g["started_ms"] or 0,
                signals=by_gateway.get((g["site"], g["gateway"]), []),
            )
            out.append(BirthRecord(g["site"], birth, g["birth_ms"] or 0))
        return out

    async def load_streams(self, limit: int = 100_000) -> list[StreamRow]:
        q = select(sequence_streams).order_by(sequence_streams.c.updated_ms.desc()).limit(limit)
        with guard("registry load", self._backend):
            async with self.engine.connect() as conn:
                rows = (await conn.execute(q)).mappings().all()
        return [
            StreamRow(
                gateway=r["gateway"],
                boot=r["boot"],
                contiguous=r["contiguous"],
                pending=tuple(int(x) for x in r["pending"].split()),
                duplicates=r["duplicates"],
                gaps=r["gaps"],
                filled=r["filled"],
                updated_ms=r["updated_ms"],
            )
            for r in reversed(rows)
        ]

    async def gateways(self) -> list[dict[str, Any]]:
        with guard("registry list", self._backend):
            async with self.engine.connect() as conn:
                q = select(gateways).order_by(gateways.c.site, gateways.c.gateway)
                return [dict(r) for r in (await conn.execute(q)).mappings().all()]

    async def signals(self, site: str, gateway: str) -> list[dict[str, Any]]:
        q = (
            select(signals)
            .where(and_(signals.c.site == site, signals.c.gateway == gateway))
            .order_by(signals.c.signal)
        )
        with guard("registry list", self._backend):
            async with self.engine.connect() as conn:
                return [dict(r) for r in (await conn.execute(q)).mappings().all()]
