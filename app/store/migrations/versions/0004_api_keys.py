"""API keys: hashed at rest, with scopes, created and revoked with the CLI.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


_MYSQL = ("mysql", "mariadb")


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def upgrade() -> None:
    mysql_like = op.get_bind().dialect.name in _MYSQL
    op.create_table(
        "treadle_api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("scopes", sa.String(64), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("last_used_at", _ts()),
        sa.Column("revoked_at", _ts()),
        # MySQL names every primary key PRIMARY and warns about any other name.
        sa.PrimaryKeyConstraint("id", name="PRIMARY" if mysql_like else "pk_treadle_api_keys"),
    )


def downgrade() -> None:
    op.drop_table("treadle_api_keys")
