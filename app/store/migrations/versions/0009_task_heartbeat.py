"""Tasks and map items keep their last heartbeat.

Revision ID: 0009
Revises: 0008

`heartbeat` is the JSON `{at, attempt, details}` of the latest `task.heartbeat` decided
for the task (or map item), shown by the API, the CLI and the dashboard.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_MYSQL = ("mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def upgrade() -> None:
    # Added nullable, so no table rewrite on any database.
    op.add_column("treadle_tasks", sa.Column("heartbeat", _json()))
    op.add_column("treadle_map_items", sa.Column("heartbeat", _json()))


def downgrade() -> None:
    for table in ("treadle_map_items", "treadle_tasks"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("heartbeat")
