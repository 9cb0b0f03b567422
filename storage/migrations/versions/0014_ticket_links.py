"""ticket links: each recipient's own, revocable link to a ticket's web page (`/t/<token>`); only the
token's sha256 is stored (issue 18)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 21:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ticket_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("token_sha256"),
    )
    op.create_index("ix_ticket_links_ticket_id_contact_id", "ticket_links", ["ticket_id", "contact_id"])
    op.create_index("ix_ticket_links_contact_id", "ticket_links", ["contact_id"])


def downgrade() -> None:
    op.drop_index("ix_ticket_links_contact_id", table_name="ticket_links")
    op.drop_index("ix_ticket_links_ticket_id_contact_id", table_name="ticket_links")
    op.drop_table("ticket_links")
