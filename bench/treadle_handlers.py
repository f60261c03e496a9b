"""The no-op handler every Treadle benchmark workflow uses, so engine overhead is measured."""

from typing import Any

from app import TaskContext, handler


@handler("bench.noop")
async def noop(ctx: TaskContext, input: Any) -> None:
    """Do nothing."""
