"""The initial schema: workflows, runs, tasks, history, outbox, timers.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Written out by hand rather than imported from `treadle.store._tables`, so that later edits to
the tables never change what this migration did.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID, _NAME, _KEY = 64, 200, 255
_MYSQL = ("mysql", "mariadb")


def _json() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.LONGTEXT(), *_MYSQL)


def _bytes() -> sa.types.TypeEngine[bytes]:
    return sa.LargeBinary().with_variant(mysql.LONGBLOB(), *_MYSQL)


def _ts() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), *_MYSQL)


def _big_id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _run_fk(table: str) -> sa.ForeignKey:
    return sa.ForeignKey("treadle_runs.id", ondelete="CASCADE", name=f"fk_{table}_run_id")


def _pk(name: str, *columns: str) -> sa.PrimaryKeyConstraint:
    # MySQL names every primary key PRIMARY and warns about any other name.
    mysql_like = op.get_bind().dialect.name in _MYSQL
    return sa.PrimaryKeyConstraint(*columns, name="PRIMARY" if mysql_like else name)


def upgrade() -> None:
    partial = op.get_bind().dialect.name not in _MYSQL
    op.create_table(
        "treadle_workflows",
        sa.Column("name", sa.String(_NAME), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(128), nullable=False),
        sa.Column("definition", _json(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        _pk("pk_treadle_workflows", "name", "version"),
    )
    op.create_table(
        "treadle_runs",
        sa.Column("id", sa.String(_ID), nullable=False),
        sa.Column("workflow", sa.String(_NAME), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", _json()),
        sa.Column("output", _json()),
        sa.Column("error", _json()),
        sa.Column("idempotency_key", sa.String(_KEY)),
        sa.Column("parent_run_id", sa.String(_ID)),
        sa.Column("parent_task_id", sa.String(_NAME)),
        sa.Column("signals", _json()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
        sa.Column("updated_at", _ts(), nullable=False),
        _pk("pk_treadle_runs", "id"),
        sa.UniqueConstraint("idempotency_key", name="uq_treadle_runs_idempotency_key"),
    )
    _index("treadle_runs", "created_at", "id")
    _index("treadle_runs", "workflow", "created_at", "id")
    _index("treadle_runs", "status", "created_at", "id")
    _index("treadle_runs", "parent_run_id")
    op.create_table(
        "treadle_tasks",
        sa.Column("run_id", sa.String(_ID), _run_fk("treadle_tasks"), nullable=False),
        sa.Column("task_id", sa.String(_NAME), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("input", _json()),
        sa.Column("output", _json()),
        sa.Column("error", _json()),
        sa.Column("scheduled_at", _ts()),
        sa.Column("started_at", _ts()),
        sa.Column("finished_at", _ts()),
        _pk("pk_treadle_tasks", "run_id", "task_id"),
    )
    if partial:
        active = sa.text("status IN ('scheduled', 'running')")
        op.create_index(
            "ix_treadle_tasks_active",
            "treadle_tasks",
            ["run_id", "task_id"],
            postgresql_where=active,
            sqlite_where=active,
        )
    else:
        op.create_index("ix_treadle_tasks_status", "treadle_tasks", ["status", "run_id", "task_id"])
    op.create_table(
        "treadle_history",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(_ID), _run_fk("treadle_history"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(_NAME)),
        sa.Column("attempt", sa.Integer()),
        sa.Column("data", _json()),
        sa.Column("at", _ts(), nullable=False),
        _pk("pk_treadle_history", "id"),
    )
    _index("treadle_history", "run_id", "id")
    op.create_table(
        "treadle_outbox",
        sa.Column("id", _big_id(), autoincrement=True, nullable=False),
        sa.Column("channel", sa.String(_KEY), nullable=False),
        sa.Column("key", sa.String(_KEY), nullable=False),
        sa.Column("body", _bytes(), nullable=False),
        sa.Column("headers", _json()),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("sent_at", _ts()),
        _pk("pk_treadle_outbox", "id"),
    )
    if partial:
        unsent = sa.text("sent_at IS NULL")
        op.create_index(
            "ix_treadle_outbox_unsent",
            "treadle_outbox",
            ["created_at", "id"],
            postgresql_where=unsent,
            sqlite_where=unsent,
        )
    else:
        op.create_index("ix_treadle_outbox_sent", "treadle_outbox", ["sent_at", "created_at", "id"])
    op.create_table(
        "treadle_timers",
        sa.Column("run_id", sa.String(_ID), _run_fk("treadle_timers"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("task_id", sa.String(_NAME), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("fire_at", _ts(), nullable=False),
        sa.Column("leased_until", _ts()),
        _pk("pk_treadle_timers", "run_id", "kind", "task_id", "attempt"),
    )
    _index("treadle_timers", "fire_at")


def _index(table: str, *columns: str) -> None:
    op.create_index(f"ix_{table}_{'_'.join(columns)}", table, list(columns))


def downgrade() -> None:
    for table in (
        "treadle_timers",
        "treadle_outbox",
        "treadle_history",
        "treadle_tasks",
        "treadle_runs",
        "treadle_workflows",
    ):
        op.drop_table(table)
