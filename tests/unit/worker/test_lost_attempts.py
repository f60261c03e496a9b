"""A dispatch whose earlier deliveries never finished is failed, not run again."""

from __future__ import annotations

import anyio
import msgspec
import pytest

from tests.unit.worker.fakes import FakeClock, FakeDelivery, FakeTransport
from treadle import TaskContext, handler
from treadle.config import WorkerSettings
from treadle.domain.events import DispatchTask, TaskCompleted, TaskFailed
from treadle.messages import (
    EARLIER_DELIVERIES,
    EVENTS_CHANNEL,
    delivered_once_more,
    earlier_deliveries,
    envelope,
    to_message,
)
from treadle.modules.worker import HandlerRegistry, Worker

ran: list[int] = []


@handler("count_runs")
async def count_runs(ctx: TaskContext) -> int:
    ran.append(ctx.attempt)
    return ctx.attempt


def _delivery(
    *, broker_count: int = 1, delivery: int = 1, item: int | None = None, earlier: int = 0
) -> FakeDelivery:
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
    message = to_message(envelope(dispatch, source="test"))
    for _ in range(earlier):
        message = delivered_once_more(message)
    return FakeDelivery(message, delivery_count=broker_count)


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


class _Counter:
    """A store's delivery count: `start` earlier deliveries, or failing."""

    def __init__(self, start: int = 0, *, broken: bool = False) -> None:
        self.counts: dict[tuple[str, str, int, int | None], int] = {}
        self.start = start
        self.broken = broken

    async def count_delivery(
        self, run_id: str, task_id: str, attempt: int, item: int | None
    ) -> int:
        if self.broken:
            raise ConnectionError("the database is away")
        key = (run_id, task_id, attempt, item)
        self.counts[key] = self.counts.get(key, self.start) + 1
        return self.counts[key]


async def _process_counted(
    delivery: FakeDelivery, transport: FakeTransport, counter: _Counter
) -> None:
    registry = HandlerRegistry()
    registry.add(count_runs)
    worker = Worker(
        transport, registry, WorkerSettings(), FakeClock(), source="w1", deliveries=counter
    )
    with anyio.fail_after(5):
        await worker.process(delivery)


@pytest.mark.anyio
async def test_the_store_count_refuses_a_redelivery_the_broker_did_not_count() -> None:
    """A record read again after its workers died, still on the broker's first delivery
    (Kafka), is refused once the store has counted two deliveries before it."""
    transport = FakeTransport()
    counter = _Counter(start=2)
    settled = _delivery(broker_count=1, delivery=1)
    await _process_counted(settled, transport, counter)
    assert ran == []
    [failed] = transport.payloads(EVENTS_CHANNEL)
    assert isinstance(failed, TaskFailed)
    assert failed.error.type == "AttemptLost"
    assert "delivered 3 times" in failed.error.message
    assert counter.counts == {("r1", "t", 2, None): 3}
    assert settled.settled == "ack"


@pytest.mark.anyio
async def test_the_store_counts_each_delivery_before_it_runs() -> None:
    """Each delivery is counted before its handler runs: the first two run, the third is
    refused, though the broker says first delivery every time."""
    transport = FakeTransport()
    counter = _Counter()
    for _ in range(3):
        await _process_counted(_delivery(broker_count=1), transport, counter)
    assert ran == [2, 2]
    kinds = [type(p).__name__ for p in transport.payloads(EVENTS_CHANNEL)]
    assert kinds == ["TaskCompleted", "TaskCompleted", "TaskFailed"]


@pytest.mark.anyio
async def test_a_store_that_cannot_count_leaves_the_attempt_running() -> None:
    """With the database away, the delivery runs uncounted rather than being refused."""
    transport = FakeTransport()
    await _process_counted(_delivery(), transport, _Counter(broken=True))
    assert ran == [2]
    [result] = transport.payloads(EVENTS_CHANNEL)
    assert isinstance(result, TaskCompleted)


@pytest.mark.anyio
async def test_a_delivery_made_before_the_broker_had_the_message_counts() -> None:
    """An eager dispatch whose process died is published marked as delivered once: the
    broker's second delivery of it is the attempt's third, refused; its first still runs."""
    transport = FakeTransport()
    await _process(_delivery(broker_count=1, earlier=1), transport)
    assert ran == [2]
    refused = _delivery(broker_count=2, earlier=1)
    await _process(refused, transport)
    assert ran == [2]
    kinds = [type(p).__name__ for p in transport.payloads(EVENTS_CHANNEL)]
    assert kinds == ["TaskCompleted", "TaskFailed"]
    assert refused.settled == "ack"


@pytest.mark.anyio
async def test_the_store_count_already_has_the_eager_delivery() -> None:
    """With deliveries counted in the store, the eager one was counted there as it ran: the
    mark on the published row adds nothing, so its broker delivery is the second and runs."""
    transport = FakeTransport()
    counter = _Counter(start=1)
    await _process_counted(_delivery(broker_count=1, earlier=1), transport, counter)
    assert ran == [2]


def test_the_earlier_deliveries_mark_adds_up_and_ignores_a_bad_value() -> None:
    """Each mark adds one; a header that is not a count counts as none (one more run at
    worst, never a refusal of a first delivery)."""
    message = to_message(envelope(_dispatch_for_marks(), source="test"))
    assert earlier_deliveries(message) == 0
    twice = delivered_once_more(delivered_once_more(message))
    assert earlier_deliveries(twice) == 2
    assert twice.body == message.body
    bad = msgspec.structs.replace(message, headers={**message.headers, EARLIER_DELIVERIES: "-1"})
    assert earlier_deliveries(bad) == 0


def _dispatch_for_marks() -> DispatchTask:
    return DispatchTask(
        run_id="r1", task_id="t", attempt=1, task_type="handler", queue="default", handler="h"
    )
