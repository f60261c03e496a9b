"""A module that claims a handler name `sample_handlers` already uses."""

from __future__ import annotations

from treadle import TaskContext, handler


@handler("sample.add")
async def add_again(ctx: TaskContext, a: int, b: int) -> int:
    return a + b
