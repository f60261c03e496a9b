"""Handlers the end-to-end tests load with `treadle serve --handlers tests.e2e.handlers`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from treadle import TaskContext, handler


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


_in_flight: dict[str, int] = {}
_peak: dict[str, int] = {}


@handler("e2e.track")
async def track(ctx: TaskContext, n: int, file: str) -> int:
    """Count executions in flight per `file` and record the highest count there.

    The server runs every role in one process, so a module-level counter sees every
    concurrent execution. The file is how the test reads the peak; it is written without
    an await in between, so no other execution can interleave with the update.
    """
    _in_flight[file] = _in_flight.get(file, 0) + 1
    try:
        if _in_flight[file] > _peak.get(file, 0):
            _peak[file] = _in_flight[file]
            Path(file).write_text(str(_peak[file]))  # noqa: ASYNC240 -- tiny, and must not yield
        await anyio.sleep(0.005)
    finally:
        _in_flight[file] -= 1
    return n * 2
