"""Real handlers the engine integration tests run through the worker."""

from __future__ import annotations

from typing import Any

import anyio

from treadle import TaskContext, handler

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


async def released(run_id: str) -> None:
    """Wait until a test releases the run (polled, like `t.hold`)."""
    while True:
        if run_id in RELEASED:
            return
        await anyio.sleep(0.02)


HUNG: set[str] = set()
"""Run ids whose `t.beat_then_hang` first attempt stopped beating."""

SAW_CANCEL: set[str] = set()
"""Run ids whose hung `t.beat_then_hang` attempt saw its own cancellation."""


@handler("t.beat_then_hang")
async def beat_then_hang(ctx: TaskContext, beats: int) -> dict[str, Any]:
    """Attempt 1 beats `beats` times with its progress, then stops beating and hangs until
    cancelled (or released); a later attempt returns at once, without a beat, so the
    kept heartbeat stays attempt 1's."""
    if ctx.attempt > 1:
        return {"attempt": ctx.attempt}
    for done in range(1, beats + 1):
        await ctx.heartbeat({"done": done, "of": beats})
    HUNG.add(ctx.run_id)
    try:
        await released(ctx.run_id)
    except anyio.get_cancelled_exc_class():
        SAW_CANCEL.add(ctx.run_id)
        raise
    return {"attempt": ctx.attempt, "released": True}


@handler("t.beat")
async def beat(ctx: TaskContext, item: Any) -> Any:
    """Send one heartbeat naming the item, then return it once the run is released (a
    quicker attempt's beat may never leave: its result goes out in its place)."""
    await ctx.heartbeat({"item": item})
    await released(ctx.run_id)
    return item
