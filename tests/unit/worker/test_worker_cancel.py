"""`task.cancel` reaches the attempts a worker runs, and those it has not started yet."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import pytest

from tests.unit.worker.fakes import FakeClock, FakeTransport, delivery_of
from treadle import TaskContext, handler
from treadle.config import WorkerSettings
from treadle.domain.events import CancelAttempts, DispatchTask, TaskCompleted, TaskFailed
from treadle.messages import CONTROL_CHANNEL, EVENTS_CHANNEL
from treadle.modules.worker import HandlerRegistry, Worker

seen: dict[str, list[str]] = {}
started = {"sync": threading.Event()}


@handler("forever")
async def forever(ctx: TaskContext) -> str:
    seen.setdefault(ctx.task_id, []).append("started")
    try:
        await anyio.sleep(60)
    except anyio.get_cancelled_exc_class():
        seen[ctx.task_id].append("cancelled")
        raise
    return "too late"


@handler("polling")
def polling(ctx: TaskContext) -> str:
    started["sync"].set()
    deadline = time.monotonic() + 10
    while not ctx.cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    seen.setdefault(ctx.task_id, []).append(f"cancelled={ctx.cancelled}")
    return "stopped"


def _dispatch(task_id: str, name: str, run_id: str = "r1", attempt: int = 1) -> DispatchTask:
    return DispatchTask(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        task_type="handler",
        queue="default",
        handler=name,
    )


@asynccontextmanager
async def running_worker(transport: FakeTransport) -> AsyncIterator[Worker]:
    registry = HandlerRegistry()
    registry.add(forever)
    registry.add(polling)
    settings = WorkerSettings(drain_seconds=0.2)
    worker = Worker(transport, registry, settings, FakeClock(), source="worker-1")
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield worker
        finally:
            tg.cancel_scope.cancel()
    await transport.close()


def _results(transport: FakeTransport) -> list[object]:
    payloads = transport.payloads(EVENTS_CHANNEL)
    return [p for p in payloads if isinstance(p, TaskCompleted | TaskFailed)]


async def _wait_for(condition: Callable[[], bool]) -> None:
    # Polling: a sync handler's thread changes what is watched, and it cannot set an Event.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_cancel_stops_a_running_async_handler_at_its_next_await() -> None:
    """The handler sees cancellation, the dispatch is acked, and no result is published."""
    transport = FakeTransport()
    seen.clear()
    dispatch = delivery_of(_dispatch("a", "forever"))
    with anyio.fail_after(5):
        async with running_worker(transport) as worker:
            await transport.feed("tasks.default").send(dispatch)
            await _wait_for(lambda: seen.get("a") == ["started"])
            cancel = delivery_of(CancelAttempts(run_id="r1", reason="the run ended cancelled"))
            await transport.feed(CONTROL_CHANNEL).send(cancel)
            await dispatch.settled_event.wait()
            assert worker.inflight == 0
    assert seen["a"] == ["started", "cancelled"]
    assert (dispatch.settled, cancel.settled) == ("ack", "ack")
    assert _results(transport) == []


@pytest.mark.anyio
async def test_a_cancel_flags_a_sync_handler_and_frees_its_slot() -> None:
    """A sync handler's `ctx.cancelled` turns True; the worker lets the attempt go at once."""
    transport = FakeTransport()
    seen.clear()
    started["sync"].clear()
    dispatch = delivery_of(_dispatch("s", "polling"))
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed("tasks.default").send(dispatch)
            await _wait_for(started["sync"].is_set)
            one = CancelAttempts(run_id="r1", task_id="s", attempt=1)
            await transport.feed(CONTROL_CHANNEL).send(delivery_of(one))
            await dispatch.settled_event.wait()
            await _wait_for(lambda: "s" in seen)
    assert seen["s"] == ["cancelled=True"]
    assert dispatch.settled == "ack"
    assert _results(transport) == []


@pytest.mark.anyio
async def test_a_cancel_for_other_attempts_leaves_this_one_running() -> None:
    """Only the attempts a cancel names stop (another run, another attempt number)."""
    transport = FakeTransport()
    seen.clear()
    dispatch = delivery_of(_dispatch("a", "forever", attempt=2))
    with anyio.fail_after(5):
        async with running_worker(transport) as worker:
            await transport.feed("tasks.default").send(dispatch)
            await _wait_for(lambda: seen.get("a") == ["started"])
            for other in (
                CancelAttempts(run_id="r2"),
                CancelAttempts(run_id="r1", task_id="a", attempt=1),
            ):
                delivery = delivery_of(other)
                await transport.feed(CONTROL_CHANNEL).send(delivery)
                await delivery.settled_event.wait()
            await anyio.sleep(0.05)
            assert worker.inflight == 1
    # Cancelled only by the worker stopping, which leaves it unsettled for the broker.
    assert seen["a"] == ["started", "cancelled"]
    assert dispatch.settled is None


@pytest.mark.anyio
async def test_a_dispatch_cancelled_before_delivery_is_acked_without_running() -> None:
    """A dispatch decided before a cancel that names it is skipped; a later one runs."""
    transport = FakeTransport()
    seen.clear()
    stale = delivery_of(_dispatch("a", "forever"))
    cancel = delivery_of(CancelAttempts(run_id="r1"))
    fresh = delivery_of(_dispatch("b", "forever", attempt=2))  # decided after: a retry
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed(CONTROL_CHANNEL).send(cancel)
            await cancel.settled_event.wait()
            await transport.feed("tasks.default").send(stale)
            await stale.settled_event.wait()
            await transport.feed("tasks.default").send(fresh)
            await _wait_for(lambda: seen.get("b") == ["started"])
    assert stale.settled == "ack"
    assert "a" not in seen
    assert transport.payloads(EVENTS_CHANNEL)[:1] != []  # the fresh one reported its start
