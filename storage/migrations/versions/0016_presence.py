"""automation (issue 19), first part: agents' presence. An agent is away from `away_since` until
`away_until` (open-ended when NULL); present when `away_since` is NULL or `away_until` has passed.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08 02:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("away_since", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("away_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("away_until")
        batch.drop_column("away_since")
