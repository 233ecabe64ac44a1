"""The metadata store: registry, dead letters and sequence state in one SQL database.

SQLAlchemy 2 (async): SQLite in WAL mode by default, PostgreSQL in production. The schema is
owned by the Alembic migrations in ``cloud_service/migrations``, applied at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from cloud_service.metadata.deadletters import SqlDeadLetterStore
from cloud_service.metadata.engine import create_engine, migrate
from cloud_service.metadata.registry import SqlRegistry

if TYPE_CHECKING:  # settings import the API, which imports the alert store, which imports us
    from cloud_service.settings import MetadataSettings

__all__ = [
    "MetadataStore",
    "SqlDeadLetterStore",
    "SqlRegistry",
    "create_engine",
    "migrate",
]


@dataclass
class MetadataStore:
    engine: AsyncEngine
    registry: SqlRegistry
    dead_letters: SqlDeadLetterStore

    @classmethod
    def from_settings(cls, settings: MetadataSettings) -> MetadataStore:
        """Build (no I/O yet: the engine connects lazily); call :meth:`migrate` before use."""
        engine = create_engine(settings)
        return cls(
            engine,
            SqlRegistry(engine),
            SqlDeadLetterStore(
                engine,
                max_rows=settings.dead_letter_max_rows,
                max_bytes=settings.dead_letter_max_bytes,
                max_raw_bytes=settings.dead_letter_max_raw_bytes,
            ),
        )

    async def migrate(self) -> None:
        await migrate(self.engine)

    async def aclose(self) -> None:
        await self.engine.dispose()
