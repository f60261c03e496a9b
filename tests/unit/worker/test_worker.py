"""The worker loop: dispatches in, results out, ack after publish, limits and draining."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
import pytest

from tests.unit.worker.fakes import FakeClock, FakeDelivery, FakeTransport, delivery_of
from treadle import TaskContext, handler
from treadle.config import WorkerSettings
from treadle.domain.events import (
    DispatchTask,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
)
from treadle.messages import EVENTS_CHANNEL, Message
from treadle.modules.worker import HandlerRegistry, Worker

gate: dict[str, anyio.Event] = {}


@handler("double")
async def double(ctx: TaskContext, value: int) -> int:
    return value * 2


@handler("wait")
async def wait(ctx: TaskContext, key: str) -> str:
    await gate[key].wait()
    return key


def _dispatch(task_id: str, handler: str = "double", **input: object) -> DispatchTask:
    return DispatchTask(
        run_id="r1",
        task_id=task_id,
        attempt=1,
        task_type="handler",
        queue="default",
        handler=handler,
        input=input,
    )


@asynccontextmanager
async def running_worker(
    transport: FakeTransport, **settings: object
) -> AsyncIterator[anyio.CancelScope]:
    """A worker running in the background; cancel the yielded scope to stop it."""
    registry = HandlerRegistry()
    registry.add(double)
    registry.add(wait)
    worker = Worker(transport, registry, WorkerSettings(**settings), FakeClock(), source="worker-1")
    async with anyio.create_task_group() as tg:
        scope = anyio.CancelScope()

        async def run() -> None:
            with scope:
                await worker.run()

        tg.start_soon(run)
        try:
            yield scope
        finally:
            scope.cancel()
    await transport.close()


@pytest.mark.anyio
async def test_a_dispatch_is_started_completed_then_acked() -> None:
    """A quick attempt's TaskCompleted carries its start; the delivery is acked after."""
    transport = FakeTransport()
    delivery = delivery_of(_dispatch("t1", value=4), traceparent="00-abc-def-01")
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed("tasks.default").send(delivery)
            await delivery.settled_event.wait()

    [completed] = transport.payloads(EVENTS_CHANNEL)
    assert isinstance(completed, TaskCompleted)
    assert completed.output == 8
    assert completed.started_at is not None
    assert completed.worker == "worker-1"
    assert (completed.task_id, completed.attempt) == ("t1", 1)
    assert delivery.settled == "ack"
    assert {e.traceparent for e in transport.envelopes(EVENTS_CHANNEL)} == {"00-abc-def-01"}
    assert sorted(transport.subscriptions) == [
        ("broadcast.control", "worker.worker-1", 64),
        ("tasks.default", "workers", 32),
    ]


class BatchRecordingTransport(FakeTransport):
    """Also records each publish call's batch of messages."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        self.batches.append(len(messages))
        await super().publish(channel, messages)


@pytest.mark.anyio
async def test_a_quick_attempt_publishes_its_start_with_its_result() -> None:
    """One message carries a quick attempt's start and result; a slow one's start goes
    out on its own first, and its result then carries no start."""
    transport = BatchRecordingTransport()
    gate["slow"] = anyio.Event()
    quick = delivery_of(_dispatch("t1", value=4))
    slow = delivery_of(_dispatch("t2", handler="wait", key="slow"))
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed("tasks.default").send(quick)
            await quick.settled_event.wait()
            assert transport.batches == [1]
            await transport.feed("tasks.default").send(slow)
            await transport.wait_published(EVENTS_CHANNEL, 2)  # its start, on its own
            gate["slow"].set()
            await slow.settled_event.wait()

    assert transport.batches == [1, 1, 1]
    payloads = transport.payloads(EVENTS_CHANNEL)
    assert [type(p) for p in payloads] == [TaskCompleted, TaskStarted, TaskCompleted]
    quick_result, slow_start, slow_result = payloads
    assert isinstance(quick_result, TaskCompleted)
    assert quick_result.started_at is not None
    assert isinstance(slow_start, TaskStarted)
    assert isinstance(slow_result, TaskCompleted)
    assert slow_result.started_at is None


@pytest.mark.anyio
async def test_a_poison_message_is_dead_lettered() -> None:
    """A body that does not decode is nacked without requeue and nothing is published."""
    transport = FakeTransport()
    poison = FakeDelivery(Message(key="k", body=b"not json"))
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed("tasks.default").send(poison)
            await poison.settled_event.wait()

    assert poison.settled == "dead"
    assert transport.published == {}


@pytest.mark.anyio
async def test_a_failed_publish_gives_the_dispatch_back() -> None:
    """When the result cannot be published the delivery is requeued, not acked."""
    transport = FakeTransport()
    transport.fail_publish = True
    delivery = delivery_of(_dispatch("t1", value=1))
    with anyio.fail_after(5):
        async with running_worker(transport):
            await transport.feed("tasks.default").send(delivery)
            await delivery.settled_event.wait()

    assert delivery.settled == "requeue"


@pytest.mark.anyio
async def test_concurrency_bounds_attempts_in_flight() -> None:
    """With concurrency 2, a third dispatch waits until one of the first two finishes."""
    transport = FakeTransport()
    for key in ("a", "b", "c"):
        gate[key] = anyio.Event()
    deliveries = [delivery_of(_dispatch(k, handler="wait", key=k)) for k in ("a", "b", "c")]
    with anyio.fail_after(5):
        async with running_worker(transport, concurrency=2):
            for d in deliveries:
                await transport.feed("tasks.default").send(d)
            await transport.wait_published(EVENTS_CHANNEL, 2)
            await anyio.sleep(0.05)
            started = [p.task_id for p in transport.payloads(EVENTS_CHANNEL)]
            assert sorted(started) == ["a", "b"]  # their starts go out together, any order
            gate["a"].set()
            gate["c"].set()
            await deliveries[2].settled_event.wait()
            gate["b"].set()
            await deliveries[1].settled_event.wait()

    assert {c: p for c, _, p in transport.subscriptions}["tasks.default"] == 2
    assert [d.settled for d in deliveries] == ["ack", "ack", "ack"]


@pytest.mark.anyio
async def test_stopping_drains_attempts_in_flight() -> None:
    """Cancelling the worker lets a running attempt finish, publish and ack."""
    transport = FakeTransport()
    gate["drain"] = anyio.Event()
    delivery = delivery_of(_dispatch("t1", handler="wait", key="drain"))
    with anyio.fail_after(5):
        async with running_worker(transport, drain_seconds=5.0) as scope:
            await transport.feed("tasks.default").send(delivery)
            await transport.wait_published(EVENTS_CHANNEL, 1)
            scope.cancel()
            await anyio.sleep(0.05)
            assert delivery.settled is None
            gate["drain"].set()
            await delivery.settled_event.wait()

    assert delivery.settled == "ack"
    assert isinstance(transport.payloads(EVENTS_CHANNEL)[-1], TaskCompleted)


@pytest.mark.anyio
async def test_attempts_past_the_drain_period_are_left_unacked() -> None:
    """An attempt still running after `drain_seconds` is cancelled and never settled."""
    transport = FakeTransport()
    gate["stuck"] = anyio.Event()
    delivery = delivery_of(_dispatch("t1", handler="wait", key="stuck"))
    with anyio.fail_after(5):
        async with running_worker(transport, drain_seconds=0.1) as scope:
            await transport.feed("tasks.default").send(delivery)
            await transport.wait_published(EVENTS_CHANNEL, 1)
            scope.cancel()

    assert delivery.settled is None
    assert not any(isinstance(p, TaskFailed) for p in transport.payloads(EVENTS_CHANNEL))
