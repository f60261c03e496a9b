"""Handlers of the fault suite: each attempt writes a ledger row outside the engine.

The ledger lives in the test's database (PostgreSQL) or a SQLite file, written on a
connection of its own, so it records every execution, including those whose result the
engine never saw: the suite checks at-least-once execution and which attempt's output
was kept against it.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

import anyio
import psycopg

from treadle import TaskContext, handler

LEDGER_ENV = "TREADLE_FAULT_LEDGER"

LEDGER_DDL = (
    "CREATE TABLE IF NOT EXISTS fault_ledger (run_id TEXT, task_id TEXT, attempt INT,"
    " pid INT, idempotency_key TEXT)",
    "CREATE TABLE IF NOT EXISTS fault_effects (idempotency_key TEXT PRIMARY KEY, n INT)",
)
_RECORD = "INSERT INTO fault_ledger VALUES ({p}, {p}, {p}, {p}, {p})"
_COUNT = (
    "INSERT INTO fault_effects VALUES ({p}, 1) ON CONFLICT (idempotency_key)"
    " DO UPDATE SET n = fault_effects.n + 1"
)


async def _record(ctx: TaskContext) -> None:
    """Write the attempt's ledger row and bump its side-effect counter, then commit."""
    target = os.environ[LEDGER_ENV]
    row = (ctx.run_id, ctx.task_id, ctx.attempt, os.getpid(), ctx.idempotency_key)
    if target.startswith("postgresql"):
        async with await psycopg.AsyncConnection.connect(target, autocommit=True) as conn:
            await conn.execute(_RECORD.format(p="%s"), row)
            await conn.execute(_COUNT.format(p="%s"), (ctx.idempotency_key,))
        return
    await anyio.to_thread.run_sync(_record_sqlite, target, row)


def _record_sqlite(path: str, row: tuple[Any, ...]) -> None:
    with sqlite3.connect(path, timeout=30) as conn:
        conn.execute(_RECORD.format(p="?"), row)
        conn.execute(_COUNT.format(p="?"), (row[4],))


@handler("fault.step")
async def step(
    ctx: TaskContext, seconds: float = 0.1, fail_times: int = 0, ballast: str = ""
) -> dict[str, Any]:
    """Sleep, record the execution, fail the first `fail_times` attempts, else answer.

    `ballast` is ignored: it only makes the dispatch message as large as a test wants.
    """
    del ballast
    await anyio.sleep(seconds)
    await _record(ctx)
    if ctx.attempt <= fail_times:
        msg = f"attempt {ctx.attempt} fails on purpose"
        raise RuntimeError(msg)
    return {"run": ctx.run_id, "task": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid()}


@handler("fault.slow_first")
async def slow_first(ctx: TaskContext, seconds: float = 60.0) -> dict[str, Any]:
    """Hang `seconds` on the first attempt (its timeout fires first), answer at once after."""
    if ctx.attempt == 1:
        await anyio.sleep(seconds)
    await _record(ctx)
    return {"run": ctx.run_id, "task": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid()}


EXIT_CODE = 3
"""What `fault.exit_first` ends its process with (a kill -9 would be 137)."""


@handler("fault.exit_first")
async def exit_first(ctx: TaskContext) -> dict[str, Any]:
    """Record the execution, then end the whole process with `os._exit(3)` on attempt 1
    (as an OOM kill or a segfault in a C extension would: no cleanup, no result); answer
    on a later attempt.

    "First" is the attempt number the engine hands over, so every delivery of attempt 1
    ends the process: the test sees exactly how many the engine lets run.
    """
    await _record(ctx)
    if ctx.attempt == 1:
        os._exit(EXIT_CODE)
    return {"run": ctx.run_id, "task": ctx.task_id, "attempt": ctx.attempt, "pid": os.getpid()}
