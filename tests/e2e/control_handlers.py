"""Handlers for the run-control and schedule end-to-end tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from app import TaskContext, handler


@handler("e2e.fail_until_file")
def fail_until_file(ctx: TaskContext, flag: str) -> dict[str, Any]:
    """Fail while the flag file does not exist; succeed (with the attempt) once it does.

    Sync, so the file check runs in a worker thread.
    """
    if not Path(flag).exists():
        msg = f"{flag} does not exist yet (attempt {ctx.attempt})"
        raise RuntimeError(msg)
    return {"attempt": ctx.attempt}


@handler("e2e.nap")
async def nap(ctx: TaskContext, seconds: float) -> dict[str, Any]:
    """Sleep a while, then report the task id."""
    await anyio.sleep(seconds)
    return {"task": ctx.task_id}


@handler("e2e.tick")
async def tick(ctx: TaskContext, input: Any) -> dict[str, Any]:
    """Return the run id: a scheduled run's trace."""
    return {"run": ctx.run_id}
