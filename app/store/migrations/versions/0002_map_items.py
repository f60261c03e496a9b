"""Map items: a row per item of a `map` task, so a big fan-out is not loaded whole per event.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Filled in by the work that introduces these tables."""


def downgrade() -> None:
    """Filled in by the work that introduces these tables."""
