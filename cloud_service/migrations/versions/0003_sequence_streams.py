"""Sequence-tracker state per gateway and boot, so gap and duplicate counts survive restarts.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sequence_streams",
        sa.Column("gateway", sa.String(64), primary_key=True),
        sa.Column("boot", sa.String(64), primary_key=True),
        sa.Column("contiguous", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.Text, nullable=False, server_default=""),
        sa.Column("duplicates", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("gaps", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("filled", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("updated_ms", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sequence_streams")
