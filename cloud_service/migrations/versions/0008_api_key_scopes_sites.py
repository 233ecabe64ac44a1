"""API keys: scopes read < ack < admin, and the sites a key is restricted to.

``write`` keys could acknowledge and replace the rules and the plan book: they become
``admin`` (nothing they could do is taken away). ``sites`` is a JSON list; ``[]`` (every
existing key) is every site.

Downgrading cannot express ``ack`` or a site restriction, and widening either would grant
access nobody was given: ``admin`` becomes ``write``, ``ack`` becomes ``read``, and a key
restricted to sites is revoked.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("sites", sa.Text, nullable=False, server_default="[]"))
    op.execute(sa.text("UPDATE api_keys SET scope = 'admin' WHERE scope = 'write'"))


def downgrade() -> None:
    now_ms = time.time_ns() // 1_000_000
    op.execute(
        sa.text(
            "UPDATE api_keys SET revoked_ms = :now WHERE sites <> '[]' AND revoked_ms IS NULL"
        ).bindparams(now=now_ms)
    )
    op.execute(sa.text("UPDATE api_keys SET scope = 'write' WHERE scope = 'admin'"))
    op.execute(sa.text("UPDATE api_keys SET scope = 'read' WHERE scope = 'ack'"))
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("sites")
