"""Run tags, schedule tags and schedule backfills.

Revision ID: 0012
Revises: 0011

`treadle_run_tags` holds each run's tags, one row each, with the run's created_at so
that a tag filter reads the index (key, value, created_at, run_id) newest first;
`treadle_runs.tags` keeps them for reading a run back. `treadle_schedules.tags` are
given to every run the schedule starts, and `treadle_schedules.backfill` is the cursor
of a backfill in progress, advanced by the schedule loop (so it survives a restart).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_MYSQL = ("mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    # MySQL names every primary key PRIMARY and warns about any other name.
    mysql_like = op.get_bind().dialect.name in _MYSQL
    op.add_column("treadle_runs", sa.Column("tags", _json()))
    op.add_column("treadle_schedules", sa.Column("tags", _json()))
    op.add_column("treadle_schedules", sa.Column("backfill", _json()))
    op.create_table(
        "treadle_run_tags",
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("treadle_runs.id", ondelete="CASCADE", name="fk_treadle_run_tags_run_id"),
            nullable=False,
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(200), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint(
            "run_id", "key", name="PRIMARY" if mysql_like else "pk_treadle_run_tags"
        ),
    )
    op.create_index(
        "ix_treadle_run_tags_key_value_created_at_run_id",
        "treadle_run_tags",
        ["key", "value", "created_at", "run_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_treadle_run_tags_key_value_created_at_run_id", "treadle_run_tags")
    op.drop_table("treadle_run_tags")
    op.drop_column("treadle_schedules", "backfill")
    op.drop_column("treadle_schedules", "tags")
    op.drop_column("treadle_runs", "tags")
