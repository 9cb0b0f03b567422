"""customers' side (issue 18): ticket links become HMAC-signed (a stored nonce, the token derivable again
from it and the server secret, so each mail can carry its recipient's link); desk options for the web
(language, ratings, new tickets from the web); ratings of agent replies.

Links issued under 0014 (random tokens, only a digest kept) cannot be derived again: they are revoked, and
`maildctl ticket links NUMBER` issues their recipients new ones.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE ticket_links SET revoked_at = CURRENT_TIMESTAMP WHERE revoked_at IS NULL")
    with op.batch_alter_table("ticket_links") as batch:
        batch.drop_column("token_sha256")
        batch.add_column(sa.Column("nonce", sa.String(length=22), nullable=True))
        batch.create_unique_constraint("uq_ticket_links_nonce", ["nonce"])
    with op.batch_alter_table("desks") as batch:
        batch.add_column(sa.Column("language", sa.String(length=8), nullable=False, server_default="en"))
        batch.add_column(sa.Column("web_ratings", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("web_new_tickets", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("web_confirm_address", sa.Boolean(), nullable=False, server_default="0"))
    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=True),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id", "contact_id", name="uq_ratings_message_id_contact_id"),
    )
    op.create_index("ix_ratings_ticket_id", "ratings", ["ticket_id"])
    op.create_index("ix_ratings_agent_id", "ratings", ["agent_id"])
    op.create_index("ix_ratings_desk_id", "ratings", ["desk_id"])
    op.create_index("ix_ratings_contact_id", "ratings", ["contact_id"])


def downgrade() -> None:
    op.drop_table("ratings")
    with op.batch_alter_table("desks") as batch:
        for column in ("web_confirm_address", "web_new_tickets", "web_ratings", "language"):
            batch.drop_column(column)
    with op.batch_alter_table("ticket_links") as batch:
        batch.drop_constraint("uq_ticket_links_nonce", type_="unique")
        batch.drop_column("nonce")
        batch.add_column(sa.Column("token_sha256", sa.String(length=64), nullable=True))
