"""Handlers the dashboard tests load next to `tests.e2e.handlers`."""

from __future__ import annotations

from typing import Any

import anyio

from app import TaskContext, handler


@handler("ui.step")
async def step(ctx: TaskContext, input: Any) -> dict[str, Any]:
    """Take a moment (so a browser can watch the graph change), then report the task id."""
    seconds = input.get("seconds", 0.5) if isinstance(input, dict) else 0.5
    await anyio.sleep(float(seconds))
    return {"step": ctx.task_id}


@handler("ui.fail")
async def fail(ctx: TaskContext, input: Any) -> None:
    """Raise with the message the input carries (it may hold markup, to test escaping)."""
    message = input.get("message", "boom") if isinstance(input, dict) else "boom"
    raise ValueError(message)
