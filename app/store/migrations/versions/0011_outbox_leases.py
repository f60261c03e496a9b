"""Outbox rows can be leased to a worker of the process that wrote them.

Revision ID: 0011
Revises: 0010

A dispatch run eagerly (handed to the deciding process's own worker instead of the
broker) stays unsent with `leased_until` set, renewed while its attempt runs; the sweeper
publishes it only once the lease has run out (its process died).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_MYSQL = ("mysql", "mariadb")


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    # Nullable, so no table rewrite on any database.
    op.add_column("treadle_outbox", sa.Column("leased_until", _ts()))


def downgrade() -> None:
    with op.batch_alter_table("treadle_outbox") as batch:
        batch.drop_column("leased_until")
