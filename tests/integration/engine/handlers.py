"""Real handlers the engine integration tests run through the worker."""

from __future__ import annotations

from typing import Any

import anyio

from app import TaskContext, handler

RELEASED: set[str] = set()
"""Run ids whose `t.hold` tasks may finish."""

ENTERED: set[str] = set()
"""Run ids whose `t.hold` task has started running."""

HOLDS: list[tuple[str, int]] = []
"""(run id, attempt) of every execution of `t.hold`, in order."""


@handler("t.echo")
async def echo(ctx: TaskContext, **input: Any) -> dict[str, Any]:
    return {"task": ctx.task_id, **input}


@handler("t.add")
def add(ctx: TaskContext, a: int, b: int) -> int:
    return a + b


@handler("t.flaky")
async def flaky(ctx: TaskContext, succeed_on: int) -> int:
    if ctx.attempt < succeed_on:
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    return ctx.attempt


@handler("t.sleep")
async def sleep(ctx: TaskContext, seconds: float) -> None:
    await anyio.sleep(seconds)


@handler("t.hold")
async def hold(ctx: TaskContext) -> str:
    ENTERED.add(ctx.run_id)
    HOLDS.append((ctx.run_id, ctx.attempt))
    # Polled, not an Event: a test releases it from outside this engine's event loop state.
    while True:
        if ctx.run_id in RELEASED:
            return "released"
        await anyio.sleep(0.02)
