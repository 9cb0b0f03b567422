"""held agent notices: when a customer mail's notice to agents was held back because its sender flooded
the desk (pipeline.notify), so the flood digest job (maild.tickets.flood_digest) tells the agents of it once

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("notice_held_at", sa.DateTime(), nullable=True))
    op.create_index("ix_messages_notice_held_at", "messages", ["notice_held_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_notice_held_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("notice_held_at")
