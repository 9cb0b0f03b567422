"""scale indexes: the flood pause (pipeline.notify) counts a sender's customer mails to a desk in the last
minutes; without an index on (desk_id, created_at) that count read the desk's whole message history, on
every customer mail. The desk-wide automatic-mail limit (maild.outbound.screening) counts the desk's
outbox rows of the last hour by template at every auto-reply: (desk_id, created_at, template) answers it
from the index (issue 16, "Scale"; tests/test_query_plans.py)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 17:05:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_desk_id_created_at", "messages", ["desk_id", "created_at"])
    op.create_index("ix_outbox_desk_id_created_at", "outbox", ["desk_id", "created_at", "template"])


def downgrade() -> None:
    op.drop_index("ix_outbox_desk_id_created_at", table_name="outbox")
    op.drop_index("ix_messages_desk_id_created_at", table_name="messages")
