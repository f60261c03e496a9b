"""Schedules: cron or interval triggers that start runs, one per tick.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Filled in by the work that introduces these tables."""


def downgrade() -> None:
    """Filled in by the work that introduces these tables."""
