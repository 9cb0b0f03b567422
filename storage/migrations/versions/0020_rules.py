"""automation (issue 19): the desks' workflow rules and their firings, contacts' custom attributes, desks'
business hours.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-08 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("desk_id", sa.Integer(), sa.ForeignKey("desks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(200), nullable=False),
        sa.Column("conditions", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False, server_default="1"),
        sa.Column("last_agent_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("desk_id", "name"),
    )
    op.create_index("ix_rules_desk_id", "rules", ["desk_id"])
    op.create_table(
        "rule_firings",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("rule_id", sa.Integer(), sa.ForeignKey("rules.id", ondelete="CASCADE"), nullable=False),
        sa.Column("ticket_id", sa.Integer(), sa.ForeignKey("tickets.id", ondelete="CASCADE"), nullable=False),
        sa.Column("event_key", sa.String(200), nullable=False),
        sa.Column("fired_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("rule_id", "ticket_id", "event_key"),
    )
    op.create_index("ix_rule_firings_ticket_id", "rule_firings", ["ticket_id"])
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("attributes", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("desks") as batch:
        batch.add_column(sa.Column("business_hours", sa.String(200), nullable=False, server_default=""))
        batch.add_column(sa.Column("rules_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("desks") as batch:
        batch.drop_column("rules_version")
        batch.drop_column("business_hours")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("attributes")
    op.drop_table("rule_firings")
    op.drop_table("rules")
