"""Tables of the metadata store (SQLAlchemy Core), the target the Alembic migrations build.

Core, not the ORM: the store does bulk upserts, inserts and counts, and nothing here needs
identity maps or lazy loading. The migrations in ``cloud_service/migrations`` create exactly
these tables; a test compares them with Alembic's autogenerate so the two cannot drift.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    true,
)

ID: Final = 64  # the shared id rule: at most 64 characters

metadata = MetaData()

#: SQLite makes an INTEGER PRIMARY KEY the rowid (auto-increment); BIGINT would not be.
_BigId = BigInteger().with_variant(Integer, "sqlite")

gateways = Table(
    "gateways",
    metadata,
    Column("site", String(ID), primary_key=True),
    Column("gateway", String(ID), primary_key=True),
    Column("boot", String(ID), nullable=True),
    Column("agent_version", String(256), nullable=False, server_default=""),
    Column("config_hash", String(256), nullable=False, server_default=""),
    Column("started_ms", BigInteger, nullable=True),
    Column("birth_ms", BigInteger, nullable=True),  # receive time of the latest birth
    Column("state", String(16), nullable=False, server_default="unknown"),
    Column("state_ms", BigInteger, nullable=True),
    Column("last_seen_ms", BigInteger, nullable=True),  # latest telemetry received
    Column("dropped", BigInteger, nullable=False, server_default="0"),  # by spool policy
)

signals = Table(
    "signals",
    metadata,
    Column("site", String(ID), primary_key=True),
    Column("gateway", String(ID), primary_key=True),
    Column("signal", String(ID), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("unit", String(256), nullable=False, server_default=""),
    Column("sku", String(ID), nullable=True),
    Column("location", String(ID), nullable=True),
    Column("line", String(ID), nullable=True),
    Column("period_s", Float, nullable=False),
    Column("description", String(256), nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default=true()),  # in the latest birth
    Column("last_seen_ms", BigInteger, nullable=True),  # receive time of its latest reading
    Column("last_ts_ms", BigInteger, nullable=True),  # device time of its latest reading
    Column("status", String(16), nullable=False, server_default="unknown"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("reason", String(32), nullable=False),
    Column("detail", Text, nullable=False),
    Column("topic", Text, nullable=False),
    Column("gateway", String(ID), nullable=True),
    Column("received_ms", BigInteger, nullable=False),
    Column("item_index", Integer, nullable=True),
    Column("size", Integer, nullable=False),  # of the original payload
    Column("raw", LargeBinary, nullable=False),  # its head when it was longer than the cap
    Index("ix_dead_letters_reason", "reason"),
    Index("ix_dead_letters_gateway", "gateway"),
    Index("ix_dead_letters_received_ms", "received_ms"),
)

sequence_streams = Table(
    "sequence_streams",
    metadata,
    Column("gateway", String(ID), primary_key=True),
    Column("boot", String(ID), primary_key=True),
    Column("contiguous", BigInteger, nullable=False),
    Column("pending", Text, nullable=False, server_default=""),  # stored seqs past a gap
    Column("duplicates", BigInteger, nullable=False, server_default="0"),
    Column("gaps", BigInteger, nullable=False, server_default="0"),
    Column("filled", BigInteger, nullable=False, server_default="0"),
    Column("updated_ms", BigInteger, nullable=False),
)
