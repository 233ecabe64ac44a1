"""Gateway and signal registry, from births and states.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(64), nullable=True),
        sa.Column("agent_version", sa.String(256), nullable=False, server_default=""),
        sa.Column("config_hash", sa.String(256), nullable=False, server_default=""),
        sa.Column("started_ms", sa.BigInteger, nullable=True),
        sa.Column("birth_ms", sa.BigInteger, nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="unknown"),
        sa.Column("state_ms", sa.BigInteger, nullable=True),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=True),
        sa.Column("dropped", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_table(
        "signals",
        sa.Column("site", sa.String(64), primary_key=True),
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("signal", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("unit", sa.String(256), nullable=False, server_default=""),
        sa.Column("sku", sa.String(64), nullable=True),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("line", sa.String(64), nullable=True),
        sa.Column("period_s", sa.Float, nullable=False),
        sa.Column("description", sa.String(256), nullable=False, server_default=""),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("last_seen_ms", sa.BigInteger, nullable=True),
        sa.Column("last_ts_ms", sa.BigInteger, nullable=True),
        sa.Column("status", sa.String(16), nullable=False, server_default="unknown"),
    )


def downgrade() -> None:
    op.drop_table("signals")
    op.drop_table("gateways")
