"""agent presence (issue 19): what a desk does when none of its agents is present, and when a ticket's
customer was told so (the desk_unavailable mail goes once per ticket).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desks") as batch:
        batch.add_column(
            sa.Column(
                "when_nobody_present", sa.String(length=20), nullable=False, server_default="notify-all"
            )
        )
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("desk_unavailable_sent_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("desk_unavailable_sent_at")
    with op.batch_alter_table("desks") as batch:
        batch.drop_column("when_nobody_present")
