"""Scheduled receipts of the plan book (open purchase orders, transfers in transit).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "plan_receipts",
        sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("location", sa.String(64), nullable=True),
        sa.Column("due_ms", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.Float, nullable=False),
        sa.Column("reference", sa.String(256), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("plan_receipts")
