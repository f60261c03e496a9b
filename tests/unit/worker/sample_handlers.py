"""Handlers used by the registry tests (imported by name through `from_modules`)."""

from __future__ import annotations

from typing import Any

from treadle import TaskContext, handler


@handler("sample.add")
async def add(ctx: TaskContext, a: int, b: int) -> int:
    return a + b


@handler("sample.echo")
def echo(ctx: TaskContext, input: Any) -> Any:
    return input


def not_a_handler(ctx: TaskContext) -> None:
    return None
