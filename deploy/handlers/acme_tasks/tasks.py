"""Handlers a workflow's `handler:` tasks name: `acme.greet` and `acme.total`."""

from __future__ import annotations

from treadle import TaskContext, handler


@handler("acme.greet")
async def greet(ctx: TaskContext, name: str) -> dict[str, str]:
    """Say hello to `name`."""
    return {"greeting": f"Hello, {name}!"}


@handler("acme.total")
def total(ctx: TaskContext, amounts: list[float]) -> dict[str, float]:
    """Add up `amounts` (a sync handler: it runs in a worker thread)."""
    return {"total": float(sum(amounts))}
