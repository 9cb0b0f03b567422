"""day one as an admin: desk sender names, retired number patterns, imported tickets, the change
counter a running daemon watches, the scheduled jobs' last runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("desks") as batch:
        batch.add_column(sa.Column("sender_name", sa.String(length=200), server_default="", nullable=False))
    with op.batch_alter_table("tickets") as batch:
        batch.add_column(sa.Column("imported_at", sa.DateTime(), nullable=True))
    op.create_table(
        "retired_patterns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("pattern", sa.String(length=200), nullable=False),
        sa.Column("retired_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_retired_patterns_desk_id", "retired_patterns", ["desk_id"])
    op.create_table(
        "change_counter",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.execute("INSERT INTO change_counter (name, value, changed_at) VALUES ('config', 0, CURRENT_TIMESTAMP)")
    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("instance", sa.String(length=200), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("ok", sa.Boolean(), nullable=True),
        sa.Column("error", sa.Text(), server_default="", nullable=False),
        sa.Column("last_ok_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_table("change_counter")
    op.drop_index("ix_retired_patterns_desk_id", table_name="retired_patterns")
    op.drop_table("retired_patterns")
    with op.batch_alter_table("tickets") as batch:
        batch.drop_column("imported_at")
    with op.batch_alter_table("desks") as batch:
        batch.drop_column("sender_name")
