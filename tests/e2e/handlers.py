"""Handlers the end-to-end tests load with `treadle serve --handlers tests.e2e.handlers`."""

from __future__ import annotations

from typing import Any

import anyio

from app import TaskContext, handler


@handler("e2e.echo")
async def echo(ctx: TaskContext, input: Any) -> Any:
    """Return the input unchanged, tagged with the task id."""
    return {"task": ctx.task_id, "input": input}


@handler("e2e.flaky")
async def flaky(ctx: TaskContext, fail_times: int) -> dict[str, int]:
    """Fail the first `fail_times` attempts, then succeed."""
    if ctx.attempt <= fail_times:
        msg = f"attempt {ctx.attempt} fails on purpose"
        raise RuntimeError(msg)
    return {"attempts": ctx.attempt}


@handler("e2e.slow")
async def slow(ctx: TaskContext, seconds: float) -> dict[str, float]:
    """Sleep for `seconds` (to be timed out or cancelled)."""
    await anyio.sleep(seconds)
    return {"slept": seconds}


@handler("e2e.sync_add")
def sync_add(ctx: TaskContext, a: int, b: int) -> int:
    """A sync handler, run in a worker thread."""
    return a + b
