"""Engine construction and start-up migrations for the metadata store.

SQLite gets WAL (readers never block the writer), a busy timeout (two workers may share the
file) and the configured ``synchronous`` level; PostgreSQL gets a pre-ping so a restarted
server costs one failed operation, not a dead pool. Migrations run at start-up under an
advisory lock (PostgreSQL) or with retries (SQLite), so workers starting together cannot
both create the schema.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cloud_service import migrations
from cloud_service.errors import MigrationError

if TYPE_CHECKING:  # settings import the API, which imports the alert store, which imports us
    from cloud_service.settings import MetadataSettings

log = logging.getLogger(__name__)

_MIGRATION_LOCK: Final = 0x666C6467  # "fldg": one advisory lock id for all our workers
_SQLITE_BUSY_MS: Final = 30_000


def create_engine(settings: MetadataSettings) -> AsyncEngine:
    url = make_url(settings.url.get_secret_value())
    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": _SQLITE_BUSY_MS / 1000})
        synchronous = settings.sqlite_synchronous

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
            cursor.close()

        return engine
    if backend != "postgresql":
        raise ValueError(f"metadata store: unsupported database {backend!r} (sqlite, postgresql)")
    return create_async_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    return config


# Alembic keeps its running environment in module globals (``alembic.context``): two upgrades
# in one process at once (aiosqlite runs each connection in its own thread) corrupt each other.
# The lock is taken before a connection is opened: a waiter holding an open SQLite transaction
# could otherwise block the holder's writes while it waits for the lock.
_ALEMBIC_LOCK = threading.Lock()


def _upgrade(connection: Connection, config: Config, revision: str) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def _acquire(lock: threading.Lock) -> None:
    while not lock.acquire(blocking=False):  # noqa: ASYNC110 - a thread lock, polled: a cancelled wait leaves nothing held
        await asyncio.sleep(0.01)


async def migrate(engine: AsyncEngine, revision: str = "head", attempts: int = 5) -> None:
    """Bring the schema to ``revision``; idempotent, safe with concurrent workers."""
    config = alembic_config()
    for attempt in range(1, attempts + 1):
        await _acquire(_ALEMBIC_LOCK)
        try:
            async with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    await conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
                await conn.run_sync(_upgrade, config, revision)
            return
        except (OperationalError, DBAPIError) as exc:
            # SQLite has no advisory lock: a concurrent worker may have won the race.
            if attempt == attempts:
                raise MigrationError(
                    f"metadata migration to {revision} failed: {exc}",
                    operation="migrate",
                    backend=engine.dialect.name,
                ) from exc
            log.warning("metadata migration attempt %d failed (%s); retrying", attempt, exc)
        finally:
            _ALEMBIC_LOCK.release()
        await asyncio.sleep(0.2 * attempt)
