"""Handlers the API tests run through the real worker."""

from __future__ import annotations

from typing import Any

from treadle import TaskContext, handler


@handler("api.greet")
async def greet(ctx: TaskContext, who: str) -> dict[str, Any]:
    return {"greeting": f"hello {who}"}


@handler("api.boom")
def boom(ctx: TaskContext) -> None:
    msg = "this handler always fails"
    raise ValueError(msg)


@handler("api.blob")
async def blob(ctx: TaskContext, size: int) -> str:
    """A string output of `size` characters (large values in a run's JSON)."""
    return "x" * size
