"""Handlers for the run-control and schedule end-to-end tests."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio

from treadle import TaskContext, handler


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


@handler("e2e.sleep_until_cancelled")
async def sleep_until_cancelled(ctx: TaskContext, marker_dir: str, seconds: float) -> None:
    """Sleep `seconds` (longer than any test waits), leaving `async-started` in
    `marker_dir`; when its cancellation reaches it, write `async-cancelled`, then re-raise."""
    await anyio.Path(marker_dir, "async-started").write_text(str(ctx.attempt))
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):  # cleanup that awaits must be shielded
            await anyio.Path(marker_dir, "async-cancelled").write_text(str(ctx.attempt))
        raise


@handler("e2e.poll_until_cancelled")
def poll_until_cancelled(ctx: TaskContext, marker_dir: str, seconds: float) -> dict[str, Any]:
    """Sync: work in small steps for `seconds`, leaving `sync-started` in `marker_dir`;
    stop early, writing `sync-cancelled`, as soon as `ctx.cancelled` turns True."""
    Path(marker_dir, "sync-started").write_text(str(ctx.attempt))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ctx.cancelled:
            Path(marker_dir, "sync-cancelled").write_text(str(ctx.attempt))
            return {"cancelled": True}
        time.sleep(0.05)
    return {"cancelled": False}
