"""Schedules: cron or interval triggers that start runs, one per tick; and paused runs.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
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
    op.add_column(
        "treadle_runs",
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "treadle_schedules",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("name", sa.String(_NAME), nullable=False),
        sa.Column("workflow", sa.String(_NAME), nullable=False),
        sa.Column("version", sa.Integer()),
        sa.Column("input", _json()),
        sa.Column("cron", sa.String(255)),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("interval_ms", sa.BigInteger()),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("catch_up", sa.String(16), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_at", _ts(), nullable=False),
        sa.Column("leased_until", _ts()),
        sa.Column("last_fire_at", _ts()),
        sa.Column("last_run_id", sa.String(_ID)),
        sa.Column("created_at", _ts(), nullable=False),
        # MySQL names every primary key PRIMARY and warns about any other name.
        sa.PrimaryKeyConstraint("id", name="PRIMARY" if mysql_like else "pk_treadle_schedules"),
        sa.UniqueConstraint("name", name="uq_treadle_schedules_name"),
    )
    op.create_index("ix_treadle_schedules_next_fire_at", "treadle_schedules", ["next_fire_at"])


def downgrade() -> None:
    op.drop_table("treadle_schedules")
    op.drop_column("treadle_runs", "paused")
