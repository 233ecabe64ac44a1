"""Alert subsystem: the transition log, lifecycle state to restore, and the delivery outbox.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BigId = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "alert_events",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("alert_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("acked", sa.Boolean, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("ix_alert_events_alert", "alert_events", ["alert_id"])
    op.create_table(
        "alert_tracks",
        sa.Column("key", sa.String(3 * 64 + 2), primary_key=True),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_ms", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("alert_id", sa.String(64), nullable=True),
        sa.Column("supersede_key", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("claim", sa.String(32), nullable=True),
        sa.Column("settled_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_alert_outbox_due", "alert_outbox", ["status", "next_attempt_ms"])
    op.create_index(
        "ix_alert_outbox_supersede", "alert_outbox", ["channel", "recipient", "supersede_key"]
    )


def downgrade() -> None:
    op.drop_table("alert_outbox")
    op.drop_table("alert_tracks")
    op.drop_table("alert_events")
