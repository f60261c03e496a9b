"""Map items: a row per item of a `map` task, so a big fan-out is not loaded whole per event.

Also gives each task row its map aggregate (`progress`) and its child run (`child_run_id`).
Timers of map items need no schema change: their key's `task_id` column holds
`<task_id>[<index>]` (task ids never contain brackets), see `treadle.store._decisions`.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID, _NAME = 64, 200
_MYSQL = ("mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    mysql_like = op.get_bind().dialect.name in _MYSQL
    op.create_table(
        "treadle_map_items",
        sa.Column(
            "run_id",
            sa.String(_ID),
            sa.ForeignKey(
                "treadle_runs.id", ondelete="CASCADE", name="fk_treadle_map_items_run_id"
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(_NAME), nullable=False),
        sa.Column("item_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("input", _json()),
        sa.Column("output", _json()),
        sa.Column("error", _json()),
        sa.Column("scheduled_at", _ts()),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
        sa.PrimaryKeyConstraint(
            "run_id",
            "task_id",
            "item_index",
            name="PRIMARY" if mysql_like else "pk_treadle_map_items",
        ),
    )
    # Added nullable, so no table rewrite on any database.
    op.add_column("treadle_tasks", sa.Column("progress", _json()))
    op.add_column("treadle_tasks", sa.Column("child_run_id", sa.String(_ID)))


def downgrade() -> None:
    with op.batch_alter_table("treadle_tasks") as batch:
        batch.drop_column("child_run_id")
        batch.drop_column("progress")
    op.drop_table("treadle_map_items")
