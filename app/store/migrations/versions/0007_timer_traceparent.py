"""Timers keep the trace context of the decision that started them.

Revision ID: 0007
Revises: 0006

A timer fired by another orchestrator replica (or after a restart) used to start a new
trace; with the starting decision's `traceparent` its firing joins the run's trace.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("treadle_timers", sa.Column("traceparent", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("treadle_timers", "traceparent")
