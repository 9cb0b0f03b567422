"""mail hygiene: blocklist, auto-reply rate limit, automatic flag, released spool rows, contact status reason

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "blocklist",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(length=320), nullable=False),
        sa.Column("subdomains", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("added_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pattern"),
    )
    op.create_table(
        "auto_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_auto_replies_address_sent_at", "auto_replies", ["address", "sent_at"])
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("status_reason", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("automatic", sa.String(length=30), nullable=True))
    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.add_column(sa.Column("released", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.drop_column("released")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("automatic")
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("status_reason")
    op.drop_index("ix_auto_replies_address_sent_at", table_name="auto_replies")
    op.drop_table("auto_replies")
    op.drop_table("blocklist")
