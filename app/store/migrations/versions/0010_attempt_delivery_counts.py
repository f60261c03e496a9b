"""Workers count their deliveries of each attempt in the database.

Revision ID: 0010
Revises: 0009

`treadle_deliveries` holds, per attempt (and map item), how many times a worker was
handed it, written before the attempt runs. Only workers on a transport whose broker
does not count a delivery that died with its consumer write it (Kafka: a killed
consumer's uncommitted records come back with their old count), so an attempt that ends
its process (`os._exit`, a segfault) is refused after `worker.lost_after_deliveries`
instead of crash-looping the worker. Rows go with their run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # MySQL names every primary key PRIMARY and warns about any other name.
    mysql_like = op.get_bind().dialect.name in ("mysql", "mariadb")
    op.create_table(
        "treadle_deliveries",
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey(
                "treadle_runs.id", ondelete="CASCADE", name="fk_treadle_deliveries_run_id"
            ),
            nullable=False,
        ),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("item", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "run_id",
            "task_id",
            "attempt",
            "item",
            name="PRIMARY" if mysql_like else "pk_treadle_deliveries",
        ),
    )


def downgrade() -> None:
    op.drop_table("treadle_deliveries")
