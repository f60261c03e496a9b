"""Scratch PostgreSQL databases: each benchmark cell creates its own and drops it after."""

from __future__ import annotations

import uuid

import psycopg

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def url(database: str, driver: str = "postgresql") -> str:
    """A URL for `database` on the local server, e.g. driver 'postgresql+asyncpg'."""
    return f"{driver}://postgres@127.0.0.1:5432/{database}"


def create(prefix: str) -> str:
    """Create a fresh database named after `prefix`; returns its name."""
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}".replace("-", "_")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop(name: str) -> None:
    """Drop a database made by `create`, disconnecting whoever is still on it."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


HISTORY_SQL = [
    """INSERT INTO treadle_runs (id, workflow, version, status, input, output, paused,
           created_at, started_at, finished_at, updated_at, revision)
       SELECT 'hist' || lpad(g::text, 28, '0'), 'history', 1, 'completed', '{}', '{}', false,
              now() - interval '1 day', now() - interval '1 day', now() - interval '1 day',
              now() - interval '1 day', 4
       FROM generate_series(1, %(runs)s) AS g""",
    """INSERT INTO treadle_tasks (run_id, task_id, position, type, status, attempt, input,
           output, scheduled_at, started_at, finished_at)
       SELECT id, 'only', 0, 'handler', 'completed', 1, '{}', '{}', created_at, created_at,
              created_at
       FROM treadle_runs WHERE workflow = 'history'""",
    """INSERT INTO treadle_history (run_id, type, task_id, attempt, at)
       SELECT r.id, t.type, CASE WHEN t.type LIKE 'task.%%' THEN 'only' END, 1, r.created_at
       FROM treadle_runs AS r,
            unnest(ARRAY['run.started', 'task.scheduled', 'task.started', 'task.completed',
                         'run.completed']) AS t(type)
       WHERE r.workflow = 'history'""",
    # As a database that served these runs over time would be: vacuumed (else autovacuum
    # works through the fresh rows during the measurement) and checkpointed.
    "VACUUM ANALYZE",
    "CHECKPOINT",
]


def fill_history(database: str, runs: int) -> None:
    """`runs` finished one-task runs (a task row and five history rows each), as if the
    database had served them: the cost of a step must not grow with what came before."""
    with psycopg.connect(url(database), autocommit=True) as conn:
        for statement in HISTORY_SQL:
            conn.execute(statement, {"runs": runs})  # type: ignore[arg-type]
