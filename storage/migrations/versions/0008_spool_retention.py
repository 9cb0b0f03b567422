"""spool retention: when a row's raw mail was purged

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("spool") as batch:
        batch.add_column(sa.Column("raw_purged_at", sa.DateTime(), nullable=True))
    op.create_index("ix_spool_received_at", "spool", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_spool_received_at", table_name="spool")
    with op.batch_alter_table("spool") as batch:
        batch.drop_column("raw_purged_at")
