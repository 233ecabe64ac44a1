"""Gateway and signal registry and sequence-tracker state in the metadata store.

Births and states are written in the write cycle of the message that carried them, before
its PUBACK. Last-seen times, health status and sequence state change with every batch, so
the shell saves them in periodic bulk statements instead (losing a few seconds of them in a
crash costs nothing: the next batch or ``first_unacked`` restores them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.schema import Table

from cloud_service.ingest.records import BirthRecord, GatewayActivity, SignalActivity, StateRecord
from cloud_service.ingest.sequence import StreamSnapshot as StreamRow
from cloud_service.metadata.guard import guard
from cloud_service.metadata.schema import gateways, sequence_streams, signals
from shared.messages import Birth, SignalKind, SignalSpec


class SqlRegistry:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._backend = engine.dialect.name

    # -- writes ---------------------------------------------------------------------------
    async def record(self, births: Sequence[BirthRecord], states: Sequence[StateRecord]) -> None:
        """Births and states of one write cycle, in one transaction."""
        if not births and not states:
            return
        with guard("registry record", self._backend):
            async with self.engine.begin() as conn:
                for b in births:
                    await self._birth(conn, b)
                for s in states:
                    row = {
                        "site": s.site,
                        "gateway": s.gateway,
                        "state": s.state.state.value,
                        "state_ms": s.state.ts,
                    }
                    await self._upsert(conn, gateways, [row], ("site", "gateway"))

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
            "dropped": sum(b.dropped.values()),
        }
        await self._upsert(conn, gateways, [row], ("site", "gateway"))
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
