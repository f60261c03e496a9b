"""Handlers for the scale-out tests: each execution leaves a row in a ledger table.

The ledger lives in the test's own PostgreSQL database (the worker's
`TREADLE_DATABASE_URL`), written through a connection of the handler's own, so the test
can count every execution, per worker process, independently of Treadle's tables.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import asyncpg

from treadle import TaskContext, handler

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS scale_ledger (
    run_id text NOT NULL,
    task_id text NOT NULL,
    attempt integer NOT NULL,
    pid integer NOT NULL
)
"""

# One pool per worker process; created on first use, behind a lock so concurrent first
# executions do not each open one.
_pool: list[asyncpg.Pool] = []
_lock = anyio.Lock()


def _dsn() -> str:
    url = os.environ["TREADLE_DATABASE_URL"]
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _ledger() -> asyncpg.Pool:
    async with _lock:
        if not _pool:
            _pool.append(await asyncpg.create_pool(_dsn(), min_size=1, max_size=2))
    return _pool[0]


@handler("scale.ledger")
async def ledger(ctx: TaskContext, input: Any) -> dict[str, Any]:
    """Record this execution in the ledger, then return who ran it."""
    pool = await _ledger()
    await pool.execute(
        "INSERT INTO scale_ledger (run_id, task_id, attempt, pid) VALUES ($1, $2, $3, $4)",
        ctx.run_id,
        ctx.task_id,
        ctx.attempt,
        os.getpid(),
    )
    return {"task": ctx.task_id, "pid": os.getpid()}
