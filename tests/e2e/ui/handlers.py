"""Handlers the dashboard tests load next to `tests.e2e.handlers`."""

from __future__ import annotations

from typing import Any

import anyio

from treadle import TaskContext, handler


@handler("ui.step")
async def step(ctx: TaskContext, input: Any) -> dict[str, Any]:
    """Take a moment (so a browser can watch the graph change), then report the task id."""
    seconds = input.get("seconds", 0.5) if isinstance(input, dict) else 0.5
    await anyio.sleep(float(seconds))
    return {"step": ctx.task_id}


@handler("ui.fail")
async def fail(ctx: TaskContext, input: Any) -> dict[str, int]:
    """Raise with the message the input carries (it may hold markup, to test escaping).

    With `fail_attempts` in the input, only attempts up to that number fail, so a retry
    from failure (which continues the attempt count) can succeed.
    """
    given = input if isinstance(input, dict) else {}
    if ctx.attempt > given.get("fail_attempts", float("inf")):
        return {"recovered_on_attempt": ctx.attempt}
    raise ValueError(given.get("message", "boom"))


@handler("ui.beat")
async def beat(ctx: TaskContext, input: Any) -> None:
    """Report progress in one heartbeat (the first goes out at once; later ones are paced
    by the task's heartbeat_timeout), then keep running until cancelled."""
    await ctx.heartbeat({"done": 3, "of": 10, "note": "<b>not markup</b>"})
    await anyio.sleep(120)


@handler("ui.odd_fails")
async def odd_fails(ctx: TaskContext, input: Any) -> int:
    """Return an even `n`; raise on an odd one (a map with some failed items)."""
    n = int(input["n"])
    if n % 2:
        raise ValueError(f"item {n} is odd")
    return n
