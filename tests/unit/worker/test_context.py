"""`TaskContext`: identity of the attempt, a paced heartbeat, and its cancellation."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.to_thread
import pytest

from treadle import TaskContext
from treadle.domain.state import MAX_HEARTBEAT_DETAILS_BYTES
from treadle.modules.worker._context import (
    DEFAULT_HEARTBEAT_INTERVAL,
    AttemptControl,
    HeartbeatTooLarge,
    heartbeat_interval,
)


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


async def _paced(sent: list[Any], interval: float) -> tuple[TaskContext, AttemptControl]:
    async def sink(details: Any) -> None:
        sent.append((anyio.current_time(), details))

    control = AttemptControl(sink, interval)
    ctx = TaskContext.for_attempt(
        run_id="r1",
        task_id="t1",
        attempt=1,
        workflow="wf",
        version=1,
        idempotency_key="r1/t1",
        control=control,
    )
    return ctx, control


@pytest.mark.anyio
async def test_heartbeats_are_paced_and_the_latest_details_always_go_out() -> None:
    """A burst sends one beat at once and the latest details an interval later, no more."""
    sent: list[tuple[float, Any]] = []
    ctx, control = await _paced(sent, 0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(control.send_heartbeats)
        begin = anyio.current_time()
        for n in range(50):
            assert await ctx.heartbeat({"n": n})
        await anyio.sleep(0.5)
        tg.cancel_scope.cancel()
    assert len(sent) == 2
    assert sent[0][0] - begin < 0.2  # the first goes out at once
    assert sent[1][0] - sent[0][0] >= 0.2
    assert sent[1][1] == {"n": 49}


@pytest.mark.anyio
async def test_sync_handlers_heartbeat_from_their_thread_without_await() -> None:
    """`ctx.heartbeat` works from a sync handler's worker thread, called without await."""
    sent: list[tuple[float, Any]] = []
    ctx, control = await _paced(sent, 0.1)

    def sync_handler() -> bool:
        sent_at_once = bool(ctx.heartbeat("alive"))
        # Past the pacing interval, so the second beat is its own rather than replacing the
        # first while the sender has not picked it up yet (latest details win by design).
        time.sleep(0.15)
        return sent_at_once and ctx.heartbeat_sync("still")

    async with anyio.create_task_group() as tg:
        tg.start_soon(control.send_heartbeats)
        assert await anyio.to_thread.run_sync(sync_handler)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()
    assert [details for _, details in sent] == ["alive", "still"]


@pytest.mark.anyio
async def test_details_must_be_json_within_the_bound() -> None:
    """Too large or non-JSON details are refused at the call, where the bug is."""
    ctx, _ = await _paced([], 1.0)
    with pytest.raises(HeartbeatTooLarge):
        ctx.heartbeat("x" * MAX_HEARTBEAT_DETAILS_BYTES)
    with pytest.raises(TypeError):
        ctx.heartbeat(object())


def test_the_pace_follows_the_heartbeat_timeout() -> None:
    """With a heartbeat_timeout beats go out every 0.8 of it; without one, every few seconds."""
    assert heartbeat_interval(10.0) == 8.0
    assert heartbeat_interval(None) == DEFAULT_HEARTBEAT_INTERVAL


@pytest.mark.anyio
async def test_a_context_built_by_hand_has_a_silent_heartbeat() -> None:
    """Users can build a context in their own tests; its heartbeat is a no-op, never cancelled."""
    ctx = TaskContext(run_id="r", task_id="t", attempt=1)

    assert await ctx.heartbeat("x") is False
    assert ctx.cancelled is False
