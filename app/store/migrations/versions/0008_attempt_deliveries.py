"""Tasks and map items count the deliveries and re-sends of their current attempt.

Revision ID: 0008
Revises: 0007

`delivery` goes up each time start-up recovery sends an attempt again (the in-process
transport lost its copy, perhaps with the process it killed), so a worker can refuse a
delivery past its bound instead of crash-looping; `resends` counts schedule-to-start
re-sends, so an attempt no worker starts fails after a bounded number of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TABLES = ("treadle_tasks", "treadle_map_items")


def upgrade() -> None:
    for table in _TABLES:
        op.add_column(
            table, sa.Column("delivery", sa.Integer, nullable=False, server_default=sa.text("1"))
        )
        op.add_column(
            table, sa.Column("resends", sa.Integer, nullable=False, server_default=sa.text("0"))
        )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("resends")
            batch.drop_column("delivery")
