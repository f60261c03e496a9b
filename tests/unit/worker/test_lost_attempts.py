"""A dispatch whose earlier deliveries never finished is failed, not run again."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from app import TaskContext, handler
from app.config import WorkerSettings
from app.domain.events import DispatchTask, TaskCompleted, TaskFailed
from app.messages import EVENTS_CHANNEL, envelope, to_message
from app.modules.worker import HandlerRegistry, Worker
from tests.unit.worker.fakes import FakeClock, FakeDelivery, FakeTransport

ran: list[int] = []


@handler("count_runs")
async def count_runs(ctx: TaskContext) -> int:
    ran.append(ctx.attempt)
    return ctx.attempt


def _delivery(*, broker_count: int = 1, delivery: int = 1, item: int | None = None) -> FakeDelivery:
    dispatch = DispatchTask(
        run_id="r1",
        task_id="t",
        attempt=2,
        task_type="handler",
        queue="default",
        handler="count_runs",
        item=item,
        delivery=delivery,
    )
    return FakeDelivery(to_message(envelope(dispatch, source="test")), delivery_count=broker_count)


async def _process(delivery: FakeDelivery, transport: FakeTransport, **settings: object) -> None:
    registry = HandlerRegistry()
    registry.add(count_runs)
    worker = Worker(transport, registry, WorkerSettings(**settings), FakeClock(), source="w1")
    with anyio.fail_after(5):
        await worker.process(delivery)


@pytest.fixture(autouse=True)
def _no_runs() -> None:
    ran.clear()


@pytest.mark.anyio
@pytest.mark.parametrize(("broker_count", "delivery"), [(1, 1), (2, 1), (1, 2)])
async def test_a_first_or_second_delivery_runs(broker_count: int, delivery: int) -> None:
    """Deliveries 1 and 2 run the handler: a kill -9 of a worker with the attempt in flight
    (or merely prefetched) must not cost a run with one attempt."""
    transport = FakeTransport()
    settled = _delivery(broker_count=broker_count, delivery=delivery)
    await _process(settled, transport)
    assert ran == [2]
    [result] = transport.payloads(EVENTS_CHANNEL)
    assert isinstance(result, TaskCompleted)
    assert settled.settled == "ack"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("broker_count", "delivery", "item"), [(3, 1, None), (1, 3, None), (2, 4, 7)]
)
async def test_a_third_delivery_fails_with_attempt_lost(
    broker_count: int, delivery: int, item: int | None
) -> None:
    """Delivery 3, by the broker's count or the orchestrator's, is not run: the attempt fails
    with a retryable AttemptLost naming the count, and the delivery is acked."""
    transport = FakeTransport()
    settled = _delivery(broker_count=broker_count, delivery=delivery, item=item)
    await _process(settled, transport)
    assert ran == []
    [failed] = transport.payloads(EVENTS_CHANNEL)
    assert isinstance(failed, TaskFailed)
    assert (failed.run_id, failed.task_id, failed.attempt, failed.item) == ("r1", "t", 2, item)
    assert failed.error.type == "AttemptLost"
    assert failed.error.retryable
    count = max(broker_count, delivery)
    assert f"attempt 2 was delivered {count} times and never finished" in failed.error.message
    assert failed.started_at is None, "it never started"
    assert settled.settled == "ack"


@pytest.mark.anyio
async def test_the_bound_is_a_setting() -> None:
    """With `lost_after_deliveries = 5`, a fourth delivery still runs."""
    transport = FakeTransport()
    await _process(_delivery(broker_count=4), transport, lost_after_deliveries=5)
    assert ran == [2]


def test_the_bound_is_at_least_two() -> None:
    """A bound of 1 would fail every first delivery: the settings refuse it."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"lost_after_deliveries": 1}, WorkerSettings)
