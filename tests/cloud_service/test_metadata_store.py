"""The metadata store on SQLite and on a real PostgreSQL: migrations, dead letters, registry."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from cloud_service.deadletter import DeadLetter
from cloud_service.errors import MetadataUnavailable
from cloud_service.ingest.records import (
    BirthRecord,
    GatewayActivity,
    SignalActivity,
    StateRecord,
)
from cloud_service.ingest.sequence import StreamSnapshot
from cloud_service.metadata import MetadataStore
from cloud_service.metadata.engine import alembic_config, migrate
from cloud_service.metadata.schema import metadata as schema
from cloud_service.settings import MetadataSettings
from shared.errors import Reason
from shared.messages import Birth, GatewayState, SignalKind, SignalSpec, State

NOW = 1_790_000_000_000


def letter(
    i: int, reason: Reason = Reason.MALFORMED, size: int = 10, gw: str = "gw-1"
) -> DeadLetter:
    return DeadLetter(reason, f"detail {i}", f"t/{i}", gw, NOW + i, bytes([i % 256]) * size)


def the_birth(signals: list[str], boot: str = "b1") -> Birth:
    return Birth(
        gateway="gw-1", site="site-1", boot=boot, agent_version="1.2", config_hash="abc",
        started_ms=NOW, dropped={"s1": 3},
        signals=[
            SignalSpec(id=s, kind=SignalKind.STOCK_LEVEL, sku="A-1", period_s=5.0) for s in signals
        ],
    )  # fmt: skip


# -- migrations ---------------------------------------------------------------------------


def _diff(conn: Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(conn), schema))


async def test_migrations_build_exactly_the_declared_schema(metadata: MetadataStore) -> None:
    async with metadata.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == "0008"


async def test_migrating_again_and_concurrently_is_harmless(metadata: MetadataStore) -> None:
    await metadata.dead_letters.put_many([letter(1)])
    await asyncio.gather(migrate(metadata.engine), migrate(metadata.engine))
    assert await metadata.dead_letters.count_by_reason() == {"malformed": 1}


async def test_every_migration_downgrades(metadata: MetadataStore) -> None:
    def down_and_up(conn: Connection) -> list[str]:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, "base")
        tables = inspect(conn).get_table_names()
        command.upgrade(config, "head")
        return tables

    async with metadata.engine.begin() as conn:
        assert await conn.run_sync(down_and_up) == ["alembic_version"]
    async with metadata.engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_an_unreachable_database_is_a_retryable_error() -> None:
    store = MetadataStore.from_settings(
        MetadataSettings(url="postgresql+asyncpg://postgres@127.0.0.1:1/none")  # type: ignore[arg-type]
    )
    try:
        with pytest.raises(MetadataUnavailable) as info:
            await store.dead_letters.put_many([letter(1)])
        assert info.value.retryable
        assert info.value.operation == "dead-letter insert"
    finally:
        await store.aclose()


# -- dead letters -------------------------------------------------------------------------


async def test_dead_letters_are_listed_newest_first_filtered_and_paged(
    metadata: MetadataStore,
) -> None:
    store = metadata.dead_letters
    await store.put_many([letter(i, Reason.SCHEMA if i % 2 else Reason.BAD_ID) for i in range(6)])
    await store.put_many(
        [DeadLetter(Reason.NON_FINITE, "nan", "t/x", None, NOW, b"\x00\xffNaN", 7)]
    )
    newest = await store.recent(limit=3)
    assert [d.reason for d in newest] == ["non_finite", "schema", "bad_id"]
    assert (newest[0].raw, newest[0].index, newest[0].gateway) == (b"\x00\xffNaN", 7, None)
    page2 = await store.recent(limit=3, before_id=newest[-1].id)
    assert [d.detail for d in page2] == ["detail 3", "detail 2", "detail 1"]
    assert [d.detail for d in await store.recent(reason="schema")] == [
        "detail 5",
        "detail 3",
        "detail 1",
    ]
    assert len(await store.recent(gateway="gw-1")) == 6
    assert await store.count_by_reason() == {"schema": 3, "bad_id": 3, "non_finite": 1}


async def test_dead_letters_are_bounded_by_rows_oldest_evicted_and_counted(
    metadata: MetadataStore,
) -> None:
    store = metadata.dead_letters  # max 20 rows
    await store.put_many([letter(i) for i in range(15)])
    await store.put_many([letter(i) for i in range(15, 30)])
    kept = await store.recent(limit=100)
    assert [d.detail for d in kept] == [f"detail {i}" for i in range(29, 9, -1)]
    assert store.evicted == 10


async def test_a_dead_letter_is_never_evicted_by_the_transaction_that_stores_it(
    metadata: MetadataStore,
) -> None:
    """Its message is acked on the strength of it: the bound waits for the next insert."""
    store = metadata.dead_letters  # max 20 rows
    await store.put_many([letter(i) for i in range(25)])  # alone over the bound
    assert len(await store.recent(limit=100)) == 25
    assert store.evicted == 0
    await store.put_many([letter(25)])
    kept = await store.recent(limit=100)
    assert [d.detail for d in kept][-1] == "detail 6"  # the older ones go, not the new one
    assert kept[0].detail == "detail 25"
    assert store.evicted == 6


async def test_dead_letters_are_bounded_by_bytes_and_raw_is_capped(metadata: MetadataStore) -> None:
    store = metadata.dead_letters  # 64 KiB in all, 4 KiB raw per letter
    big = DeadLetter(Reason.TOO_LARGE, "big", "t", "gw-1", NOW, b"x" * 100_000)
    await store.put_many([big])
    (kept,) = await store.recent()
    assert (kept.size, len(kept.raw), kept.truncated) == (100_000, 4096, True)
    await store.put_many([letter(i, size=4096) for i in range(16)])  # 17 x 4 KiB > 64 KiB
    rows = await store.recent(limit=100)
    assert sum(len(d.raw) for d in rows) <= 64 * 1024
    assert [d.detail for d in rows][-1] == "detail 0"  # only the oldest (the big one) went
    assert store.evicted == 1


# -- registry -----------------------------------------------------------------------------


async def test_births_and_states_fill_the_registry(metadata: MetadataStore) -> None:
    reg = metadata.registry
    await reg.record([BirthRecord("site-1", the_birth(["s1", "s2"]), NOW)], [])
    online = State(state=GatewayState.ONLINE, boot="b1", ts=NOW + 1)
    await reg.record([], [StateRecord("site-1", "gw-1", online, NOW + 1)])
    (gw,) = await reg.gateways()
    assert (gw["boot"], gw["agent_version"], gw["state"], gw["state_ms"], gw["dropped"]) == (
        "b1", "1.2", "online", NOW + 1, 3,
    )  # fmt: skip
    # A new birth: s2 is gone (inactive, kept for history), s3 is new.
    await reg.record([BirthRecord("site-1", the_birth(["s1", "s3"], boot="b2"), NOW + 2)], [])
    rows = {r["signal"]: r for r in await reg.signals("site-1", "gw-1")}
    assert {s: r["active"] for s, r in rows.items()} == {"s1": True, "s2": False, "s3": True}
    assert (rows["s1"]["sku"], rows["s1"]["period_s"]) == ("A-1", 5.0)
    (loaded,) = await reg.load_births()
    assert loaded.birth.boot == "b2"
    assert [s.id for s in loaded.birth.signals] == ["s1", "s3"]


async def test_activity_and_sequence_state_are_saved_and_loaded(metadata: MetadataStore) -> None:
    reg = metadata.registry
    await reg.record([BirthRecord("site-1", the_birth(["s1"]), NOW)], [])
    streams = [
        StreamSnapshot("gw-1", "b1", 7, (9, 12), 2, 3, 1, NOW),
        StreamSnapshot("gw-2", "b9", 1, (), 0, 0, 0, NOW + 1),
    ]
    await reg.save_activity(
        [GatewayActivity("site-1", "gw-1", NOW + 5), GatewayActivity("site-1", "gw-new", NOW)],
        [SignalActivity("site-1", "gw-1", "s1", NOW + 5, NOW + 4, "fresh")],
        streams,
    )
    assert await reg.load_streams() == streams
    newer = StreamSnapshot("gw-1", "b1", 12, (), 2, 3, 3, NOW + 9)
    await reg.save_activity([], [], [newer])
    assert await reg.load_streams() == [streams[1], newer]
    (s1,) = await reg.signals("site-1", "gw-1")
    assert (s1["last_seen_ms"], s1["last_ts_ms"], s1["status"]) == (NOW + 5, NOW + 4, "fresh")
    gateways = {g["gateway"]: g for g in await reg.gateways()}
    assert gateways["gw-1"]["last_seen_ms"] == NOW + 5
    assert gateways["gw-new"]["boot"] is None  # data before any birth
    assert [b.birth.gateway for b in await reg.load_births()] == ["gw-1"]
