"""Plan book (SKU policies, production and demand targets) and API keys.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_skus",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("lead_time_h", sa.Float, nullable=False),
        sa.Column("safety_stock", sa.Float, nullable=False),
        sa.Column("service_level", sa.Float, nullable=False),
        sa.Column("review_h", sa.Float, nullable=False),
    )
    op.create_table(
        "plan_production",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("line", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=True),
        sa.Column("period", sa.String(64), nullable=False),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
    )
    op.create_table(
        "plan_demand",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("start_ms", sa.BigInteger, nullable=False),
        sa.Column("end_ms", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("scope", sa.String(8), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_ms", sa.BigInteger, nullable=False),
        sa.Column("revoked_ms", sa.BigInteger, nullable=True),
        sa.Column("last_used_ms", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_api_keys_token_hash", "api_keys", ["token_hash"], unique=True)


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("plan_demand")
    op.drop_table("plan_production")
    op.drop_table("plan_skus")
