"""Dead letters: every rejected message or reading, with its reason and raw bytes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("gateway", sa.String(64), nullable=True),
        sa.Column("received_ms", sa.BigInteger, nullable=False),
        sa.Column("item_index", sa.Integer, nullable=True),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_dead_letters_reason", "dead_letters", ["reason"])
    op.create_index("ix_dead_letters_gateway", "dead_letters", ["gateway"])
    op.create_index("ix_dead_letters_received_ms", "dead_letters", ["received_ms"])


def downgrade() -> None:
    op.drop_table("dead_letters")
