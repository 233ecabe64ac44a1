"""Migration 0008 on SQLite and PostgreSQL: ``write`` keys become ``admin`` with every site;
downgrading never widens a key (``ack`` → ``read``, a site key is revoked)."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Connection, insert, select, text

from cloud_service.api import Scope, SqlApiKeyStore
from cloud_service.api.keys import token_hash
from cloud_service.metadata import MetadataStore
from cloud_service.metadata.engine import alembic_config
from cloud_service.metadata.schema import api_keys

READ_TOKEN = "fd_" + "r" * 43
WRITE_TOKEN = "fd_" + "w" * 43


def _to(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    if revision == "head":
        command.upgrade(config, revision)
    else:
        command.downgrade(config, revision)


def _old_key(name: str, scope: str, token: str) -> dict[str, Any]:
    return {"name": name, "scope": scope, "token_hash": token_hash(token), "created_ms": 1}


async def test_write_keys_become_admin_keys_for_every_site(metadata: MetadataStore) -> None:
    old = "INSERT INTO api_keys (name, scope, token_hash, created_ms) VALUES (:n, :s, :h, 1)"
    async with metadata.engine.begin() as conn:
        await conn.run_sync(_to, "0007")
        for name, scope, token in (("wall", "read", READ_TOKEN), ("bot", "write", WRITE_TOKEN)):
            await conn.execute(text(old), {"n": name, "s": scope, "h": token_hash(token)})
        await conn.run_sync(_to, "head")
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == "0008"
    keys = SqlApiKeyStore(metadata.engine)
    bot, wall = await keys.verify(WRITE_TOKEN), await keys.verify(READ_TOKEN)
    assert bot is not None
    assert wall is not None
    assert (bot.name, bot.scope, bot.sites) == ("bot", Scope.ADMIN, frozenset())
    assert (wall.name, wall.scope, wall.sites) == ("wall", Scope.READ, frozenset())


async def test_downgrading_never_widens_a_key(metadata: MetadataStore) -> None:
    keys = SqlApiKeyStore(metadata.engine, clock=lambda: 7)
    await keys.create("boss", "admin")
    await keys.create("operator", "ack")
    await keys.create("plant1", "read", ["plant-1"])
    async with metadata.engine.begin() as conn:
        await conn.run_sync(_to, "0007")
        rows = (await conn.execute(text("SELECT name, scope, revoked_ms FROM api_keys"))).all()
    by_name = {r.name: (r.scope, r.revoked_ms is not None) for r in rows}
    assert by_name == {
        "boss": ("write", False), "operator": ("read", False), "plant1": ("read", True),
    }  # fmt: skip
    async with metadata.engine.begin() as conn:
        await conn.run_sync(_to, "head")
        await conn.execute(insert(api_keys).values(**_old_key("after", "read", READ_TOKEN)))
        sites = await conn.scalar(select(api_keys.c.sites).where(api_keys.c.name == "after"))
    assert sites == "[]"  # the column's default (a writer that does not know it): every site
