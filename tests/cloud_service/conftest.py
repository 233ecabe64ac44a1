"""Fixtures for the metadata store: every test runs on SQLite and on a real PostgreSQL,
each with a database of its own (PostgreSQL: created per test, dropped afterwards)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from cloud_service.metadata import MetadataStore
from cloud_service.settings import MetadataSettings

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
async def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'meta.sqlite'}"
        return
    name = f"fdtest_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def metadata(metadata_url: str) -> AsyncIterator[MetadataStore]:
    """A migrated store with small dead-letter bounds, so tests can reach them."""
    store = MetadataStore.from_settings(
        MetadataSettings(
            url=metadata_url,  # type: ignore[arg-type]
            dead_letter_max_rows=20,
            dead_letter_max_bytes=64 * 1024,
            dead_letter_max_raw_bytes=4096,
        )
    )
    await store.migrate()
    yield store
    await store.aclose()
