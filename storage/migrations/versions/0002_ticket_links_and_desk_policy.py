"""ticket links, desk hijack guard and reopen window

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:28:09.672024
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hijack_guard", sa.Boolean(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("reopen_days", sa.Integer(), server_default="14", nullable=False))

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("linked_ticket_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_tickets_linked_ticket_id", "tickets", ["linked_ticket_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tickets_linked_ticket_id", type_="foreignkey")
        batch_op.drop_column("linked_ticket_id")

    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.drop_column("reopen_days")
        batch_op.drop_column("hijack_guard")
