"""Workers report themselves in the database, for the dashboard's workers page.

Revision ID: 0013
Revises: 0012

`treadle_workers` holds one row per worker process, upserted every
`worker.report_interval_seconds` with its queues, handlers, concurrency and in-flight
attempts; a row silent for a day is pruned.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_NAME = 200
_MYSQL = ("mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    # MySQL names every primary key PRIMARY and warns about any other name.
    mysql_like = op.get_bind().dialect.name in _MYSQL
    op.create_table(
        "treadle_workers",
        sa.Column("id", sa.String(_NAME), nullable=False),
        sa.Column("host", sa.String(_NAME), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("queues", _json(), nullable=False),
        sa.Column("handlers", _json(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("inflight", sa.Integer(), nullable=False),
        sa.Column("started_at", _ts(), nullable=False),
        sa.Column("last_seen", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="PRIMARY" if mysql_like else "pk_treadle_workers"),
    )


def downgrade() -> None:
    op.drop_table("treadle_workers")
