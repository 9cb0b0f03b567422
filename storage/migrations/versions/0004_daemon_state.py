"""auto-close options, envelope sender on spool rows, per-recipient outbox progress, IMAP polling state

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 21:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auto_close_hours", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column(
                "auto_close_statuses",
                sa.String(length=500),
                server_default="waiting,resolved",
                nullable=False,
            )
        )

    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mail_from", sa.String(length=320), server_default="", nullable=False))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("delivered_to", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("failed_to", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("retry_until", sa.DateTime(), nullable=True))

    op.create_table(
        "imap_state",
        sa.Column("account", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=200), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("account", "folder"),
    )


def downgrade() -> None:
    op.drop_table("imap_state")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("retry_until")
        batch_op.drop_column("failed_to")
        batch_op.drop_column("delivered_to")
    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.drop_column("mail_from")
    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.drop_column("auto_close_statuses")
        batch_op.drop_column("auto_close_hours")
