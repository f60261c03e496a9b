"""Runs listed or counted by workflow and status together use one index.

Revision ID: 0005
Revises: 0004

`GET /v1/runs?workflow=&status=` and `GET /v1/runs/counts?workflow=` filter on both
columns and read newest first; (workflow, status, created_at, id) serves them without
scanning a workflow's runs of every status.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INDEX = "ix_treadle_runs_workflow_status_created_at_id"


def upgrade() -> None:
    op.create_index(_INDEX, "treadle_runs", ["workflow", "status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index(_INDEX, table_name="treadle_runs")
