"""quarantine reports: which quarantined spool rows the agents were told of, by which desk and when, so
that the quarantine digest (maild.tickets.quarantine_digest) reports each row once and each desk at most
once per `[scheduler] quarantine_digest_seconds`, across restarts and instances (issue 17)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 20:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "quarantine_reports",
        sa.Column("spool_id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=True),
        sa.Column("reported_at", sa.DateTime(), nullable=False),
        sa.Column("agents", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["spool_id"], ["spool.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("spool_id"),
    )
    op.create_index(
        "ix_quarantine_reports_desk_id_reported_at", "quarantine_reports", ["desk_id", "reported_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_quarantine_reports_desk_id_reported_at", table_name="quarantine_reports")
    op.drop_table("quarantine_reports")
