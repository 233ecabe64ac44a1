"""A failed activity save keeps what it did not store pending: health status changes,
signal last-seen times and sequence state reach the metadata store with the next save that
succeeds, instead of being dropped with the failed one.

The fault is real: the PostgreSQL database turns read-only (as a standby promoted wrongly,
or a database put in maintenance would) and every open connection of it is killed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from cloud_service.app import build_app
from cloud_service.errors import MetadataError
from cloud_service.ingest.pipeline import Inbound
from cloud_service.settings import load_settings
from shared.codec import encode
from shared.messages import Birth, Reading, SignalKind, SignalSpec, TelemetryBatch
from shared.topics import Channel, TopicScheme

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SCHEME = TopicScheme()


@pytest.fixture
async def pg_name() -> AsyncIterator[str]:
    name = f"fdtest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield name
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def read_only(name: str, on: bool) -> None:
    """Turn the database read-only (or back) and kill its sessions, so the pool reconnects
    and gets the new default."""
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
        await conn.execute(f'ALTER DATABASE "{name}" {setting}')
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
    finally:
        await conn.close()


async def test_a_failed_save_is_carried_by_the_next_one(
    pg_name: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> None:
    settings = load_settings(
        None,
        mqtt={"client_id": unique_name("cloud"), "share_group": unique_name("grp")},
        influx={"url": "http://127.0.0.1:9", "database": "unused"},  # never contacted
        metadata={"url": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"},
        ingest={"peer_reports": False},
        api={"port": 0},
    )
    app = build_app(settings)
    worker, registry = app.ingest, app.metadata.registry
    try:
        await app.metadata.migrate()
        now = time.time_ns() // 1_000_000
        seen = now + 10_000  # received after health learnt the birth (in _acknowledge)
        birth = Birth(
            gateway="gw1", site="s1", boot="b1", agent_version="t", config_hash="h",
            started_ms=now, signals=[SignalSpec(id="sig", kind=SignalKind.SENSOR, period_s=60)],
        )  # fmt: skip
        batch = TelemetryBatch(
            gateway="gw1", boot="b1", seq=1, readings=[Reading("sig", now - 5, 1.5)]
        )
        prepared = worker.core.prepare(
            [
                Inbound(SCHEME.topic("s1", "gw1", Channel.BIRTH), encode(birth), now, 1),
                Inbound(SCHEME.topic("s1", "gw1", Channel.TELEMETRY), encode(batch), seen, 2),
            ]
        )
        await registry.record(prepared.births, prepared.states)
        worker._acknowledge(prepared)  # sequence state and health, as after a write
        worker.health.tick(seen + 1)  # the signal turns fresh: a status change to save

        await read_only(pg_name, True)
        for _ in range(2):  # the killed connection, then the read-only database
            with pytest.raises(MetadataError):
                await worker.flush(registry, activity=True)
        await app._flush()  # the app's periodic save: logged, not raised
        assert await registry.load_streams() == []  # nothing was saved

        await read_only(pg_name, False)
        for _ in range(2):  # the first may meet a killed connection again
            try:
                await worker.flush(registry)  # a status-only save, not an activity sweep
                break
            except MetadataError:
                continue
        (stream,) = await registry.load_streams()
        assert (stream.gateway, stream.boot, stream.contiguous) == ("gw1", "b1", 1)
        (sig,) = await registry.signals("s1", "gw1")
        assert (sig["status"], sig["last_ts_ms"]) == ("fresh", now - 5)
        assert sig["last_seen_ms"] == seen
    finally:
        await app.metadata.aclose()
        await app.store.aclose()
