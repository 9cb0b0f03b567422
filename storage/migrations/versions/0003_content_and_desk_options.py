"""visible text, content notes, inline attachments, desk intake and attachment options, merge redirects

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clients_only", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("replies_only", sa.Boolean(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("allowed_extensions", sa.String(length=500), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("max_attachment_mb", sa.Integer(), server_default="25", nullable=False))

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_tickets_merged_into_id", "tickets", ["merged_into_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("visible_text", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("content_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("notes", sa.JSON(), server_default="[]", nullable=False))

    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_id", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("inline", sa.Boolean(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("attachments", schema=None) as batch_op:
        batch_op.drop_column("inline")
        batch_op.drop_column("content_id")

    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("notes")
        batch_op.drop_column("content_sha256")
        batch_op.drop_column("visible_text")

    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tickets_merged_into_id", type_="foreignkey")
        batch_op.drop_column("merged_into_id")

    with op.batch_alter_table("desks", schema=None) as batch_op:
        batch_op.drop_column("max_attachment_mb")
        batch_op.drop_column("allowed_extensions")
        batch_op.drop_column("replies_only")
        batch_op.drop_column("clients_only")
