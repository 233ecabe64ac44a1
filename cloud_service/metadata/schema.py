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

# -- alerts (cloud_service.alerts.store) ---------------------------------------------------

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("alert_id", String(ID), nullable=False),
    Column("rule", String(ID), nullable=False),
    Column("site", String(ID), nullable=False),
    Column("subject", String(ID), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("acked", Boolean, nullable=False),
    Column("body", Text, nullable=False),  # the event as JSON, as webhooks and SSE carry it
    Index("ix_alert_events_alert", "alert_id"),
)

alert_tracks = Table(
    "alert_tracks",
    metadata,
    Column("key", String(3 * ID + 2), primary_key=True),
    Column("alert_id", String(ID), nullable=True),
    Column("body", LargeBinary, nullable=False),  # lifecycle.SavedTrack, msgspec JSON
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("channel", String(16), nullable=False),
    Column("recipient", String(320), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("severity", String(16), nullable=False),
    Column("alert_id", String(ID), nullable=True),
    Column("supersede_key", String(ID), nullable=True),
    Column("status", String(16), nullable=False),
    Column("last_error", Text, nullable=True),
    Column("claim", String(32), nullable=True),  # the dispatcher pass that holds the lease
    Column("settled_ms", BigInteger, nullable=True),
    Index("ix_alert_outbox_due", "status", "next_attempt_ms"),
    Index("ix_alert_outbox_supersede", "channel", "recipient", "supersede_key"),
)

# -- plans (cloud_service.plans.store) -----------------------------------------------------
# One row per entry of the plan book; ``position`` keeps the book's order, and the book,
# not the database, enforces uniqueness (a NULL location cannot be part of a primary key).

plan_skus = Table(
    "plan_skus",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("site", String(ID), nullable=False),
    Column("sku", String(ID), nullable=False),
    Column("location", String(ID), nullable=True),
    Column("lead_time_h", Float, nullable=False),
    Column("safety_stock", Float, nullable=False),
    Column("service_level", Float, nullable=False),
    Column("review_h", Float, nullable=False),
)

plan_production = Table(
    "plan_production",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("site", String(ID), nullable=False),
    Column("line", String(ID), nullable=False),
    Column("sku", String(ID), nullable=True),
    Column("period", String(ID), nullable=False),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("quantity", Float, nullable=False),
)

plan_demand = Table(
    "plan_demand",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("site", String(ID), nullable=False),
    Column("sku", String(ID), nullable=False),
    Column("location", String(ID), nullable=True),
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger, nullable=False),
    Column("quantity", Float, nullable=False),
)

# -- API keys (cloud_service.api.keys) -----------------------------------------------------

api_keys = Table(
    "api_keys",
    metadata,
    Column("name", String(ID), primary_key=True),
    Column("scope", String(8), nullable=False),  # read | ack | admin
    Column("token_hash", String(64), nullable=False),  # sha256 hex of the token
    Column("created_ms", BigInteger, nullable=False),
    Column("revoked_ms", BigInteger, nullable=True),
    Column("last_used_ms", BigInteger, nullable=True),
    # JSON list of the sites the key is restricted to; [] is every site
    Column("sites", Text, nullable=False, server_default="[]"),
    Index("ix_api_keys_token_hash", "token_hash", unique=True),
)

# -- alert rules (cloud_service.alerts.rule_store) -----------------------------------------
# One row per rule (its pydantic model as JSON in ``body``); ``position`` keeps the order of
# the rule file. Every change appends a row to ``alert_rule_changes``: who, when, before/after.

alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("body", Text, nullable=False),  # Rule.model_dump(mode="json", by_alias=True)
    Column("updated_ms", BigInteger, nullable=False),
    Column("updated_by", String(256), nullable=False),
)

alert_rule_changes = Table(
    "alert_rule_changes",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("actor", String(256), nullable=False),
    Column("before", Text, nullable=False),  # JSON list of rule bodies
    Column("after", Text, nullable=False),
)

# -- scheduled receipts of the plan book (cloud_service.plans.store) -----------------------
# Open purchase orders and transfers in transit, one row each, like the other plan tables.

plan_receipts = Table(
    "plan_receipts",
    metadata,
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("site", String(ID), nullable=False),
    Column("sku", String(ID), nullable=False),
    Column("location", String(ID), nullable=True),
    Column("due_ms", BigInteger, nullable=False),
    Column("quantity", Float, nullable=False),
    Column("reference", String(256), nullable=False),  # free text, "" when none
)
