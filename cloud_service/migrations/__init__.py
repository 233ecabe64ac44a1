"""Alembic migrations of the metadata store; run at start-up by ``metadata.engine.migrate``."""
