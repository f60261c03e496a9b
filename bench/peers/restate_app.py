"""The Restate services the Restate peer registers, served by hypercorn (HTTP/2).

chain10 is one handler with 10 `ctx.run` steps; fanout100 makes 100 parallel service calls.
"""

from __future__ import annotations

import restate

svc = restate.Service("bench")


async def _nothing() -> None:
    return None


@svc.handler()
async def noop(ctx: restate.Context) -> None:
    """Do nothing."""


@svc.handler()
async def one(ctx: restate.Context) -> None:
    """One durable no-op step."""
    await ctx.run("step", _nothing)


@svc.handler()
async def chain10(ctx: restate.Context) -> None:
    """Ten durable no-op steps in sequence."""
    for i in range(10):
        await ctx.run(f"step-{i}", _nothing)


@svc.handler()
async def fanout100(ctx: restate.Context) -> None:
    """100 parallel calls to `noop`, then join."""
    calls = [ctx.service_call(noop, arg=None) for _ in range(100)]
    await restate.gather(*calls)


app = restate.app([svc])
