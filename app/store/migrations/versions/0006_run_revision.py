"""Runs count their decisions: `revision` goes up by one in each decision's transaction.

Revision ID: 0006
Revises: 0005

A decision locks its run by incrementing `revision` (UPDATE ... RETURNING); a process
that holds the run's state as of the previous revision (it made that decision itself)
skips reading the run and its tasks again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "treadle_runs",
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    )


def downgrade() -> None:
    op.drop_column("treadle_runs", "revision")
