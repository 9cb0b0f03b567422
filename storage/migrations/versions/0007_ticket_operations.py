"""ticket operations: custom statuses, categories, flags, escalation rules, status_changed_at

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 00:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_statuses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=30), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("desk_id", "name"),
    )
    op.create_table(
        "categories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("desk_id", "name"),
    )
    op.create_table(
        "category_agents",
        sa.Column("category_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["category_id"], ["categories.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("category_id", "agent_id"),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("category_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_changed_at", sa.DateTime(), nullable=True))
        batch_op.create_foreign_key(
            "fk_tickets_category_id", "categories", ["category_id"], ["id"], ondelete="SET NULL"
        )
    op.execute("UPDATE tickets SET status_changed_at = updated_at")
    op.create_table(
        "ticket_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), server_default="", nullable=False),
        sa.Column("flagged_by", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("cleared_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ticket_flags_ticket_id", "ticket_flags", ["ticket_id"])
    op.create_index("ix_ticket_flags_agent_id", "ticket_flags", ["agent_id"])
    op.create_table(
        "escalation_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("after_hours", sa.Float(), nullable=False),
        sa.Column("in_status", sa.String(length=30), nullable=False),
        sa.Column("with_priority", sa.String(length=10), nullable=True),
        sa.Column("set_status", sa.String(length=30), nullable=True),
        sa.Column("set_priority", sa.String(length=10), nullable=True),
        sa.Column("set_desk_id", sa.Integer(), nullable=True),
        sa.Column("notify_agents", sa.Boolean(), server_default="0", nullable=False),
        sa.Column("remind_template", sa.String(length=50), nullable=True),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["desk_id"], ["desks.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["set_desk_id"], ["desks.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("desk_id", "name"),
    )
    op.create_table(
        "escalation_fired",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.Integer(), nullable=False),
        sa.Column("ticket_id", sa.Integer(), nullable=False),
        sa.Column("state_key", sa.String(length=200), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["rule_id"], ["escalation_rules.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("rule_id", "ticket_id", "state_key"),
    )
    op.create_index("ix_escalation_fired_ticket_id", "escalation_fired", ["ticket_id"])


def downgrade() -> None:
    op.drop_index("ix_escalation_fired_ticket_id", table_name="escalation_fired")
    op.drop_table("escalation_fired")
    op.drop_table("escalation_rules")
    op.drop_index("ix_ticket_flags_agent_id", table_name="ticket_flags")
    op.drop_index("ix_ticket_flags_ticket_id", table_name="ticket_flags")
    op.drop_table("ticket_flags")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_constraint("fk_tickets_category_id", type_="foreignkey")
        batch_op.drop_column("status_changed_at")
        batch_op.drop_column("category_id")
    op.drop_table("category_agents")
    op.drop_table("categories")
    op.drop_table("desk_statuses")
