"""`TaskContext`: identity of the attempt and a rate-limited heartbeat."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.to_thread
import pytest

from app import TaskContext


def _context(sent: list[Any]) -> TaskContext:
    async def sink(details: Any) -> None:
        sent.append(details)

    return TaskContext.for_attempt(
        run_id="r1",
        task_id="t1",
        attempt=2,
        workflow="wf",
        version=3,
        idempotency_key="r1/t1",
        heartbeat=sink,
    )


def test_context_is_frozen() -> None:
    """A handler cannot rewrite which attempt it is running."""
    ctx = _context([])
    with pytest.raises(AttributeError):
        ctx.attempt = 5  # type: ignore[misc]


@pytest.mark.anyio
async def test_heartbeats_are_sent_at_most_once_per_second() -> None:
    """A burst of heartbeats sends the first and drops the rest within the second."""
    sent: list[Any] = []
    ctx = _context(sent)

    results = [await ctx.heartbeat({"n": n}) for n in range(5)]

    assert results == [True, False, False, False, False]
    assert sent == [{"n": 0}]


@pytest.mark.anyio
async def test_sync_handlers_heartbeat_from_their_thread() -> None:
    """`heartbeat_sync` works from the worker thread a sync handler runs in."""
    sent: list[Any] = []
    ctx = _context(sent)

    assert await anyio.to_thread.run_sync(ctx.heartbeat_sync, "alive") is True
    assert sent == ["alive"]


@pytest.mark.anyio
async def test_a_context_built_by_hand_has_a_silent_heartbeat() -> None:
    """Users can build a context in their own tests; its heartbeat is a no-op."""
    ctx = TaskContext(run_id="r", task_id="t", attempt=1)

    assert await ctx.heartbeat("x") is False
