"""The relay (over the in-memory store), the timer alarm and the events consumer."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
import stamina

from tests.stores import create_run
from tests.unit.worker.fakes import FakeClock, FakeDelivery, FakeTransport, delivery_of
from treadle.domain.errors import RunNotFound
from treadle.domain.events import DispatchTask, TaskCompleted
from treadle.domain.state import RunState
from treadle.messages import Message, envelope, to_message
from treadle.modules.orchestrator import Relay, TimerAlarm
from treadle.modules.orchestrator import _consumer as consumer_module
from treadle.modules.orchestrator._consumer import EventConsumer
from treadle.modules.orchestrator._relay import PRUNE_BATCH
from treadle.observability import Telemetry
from treadle.ports import Changes, OutboxRecord, OutgoingMessage
from treadle.store.memory import MemoryStore

NOW = datetime(2024, 5, 1, tzinfo=UTC)


class SpyOutbox(MemoryStore):
    """The in-memory store, recording the relay's calls to its outbox side."""

    def __init__(self) -> None:
        super().__init__(clock=self.now)
        self.time = NOW
        self.sent: list[int] = []
        self.claimed_before: list[datetime] = []
        self.pruned_before: list[tuple[datetime, int]] = []
        self.pruned = anyio.Event()

    def now(self) -> datetime:
        """The store's clock: it stamps when rows are written and marked sent."""
        return self.time

    async def mark_sent(self, ids: Sequence[int]) -> None:
        self.sent.extend(ids)
        await super().mark_sent(ids)

    async def claim_unsent(self, older_than: datetime, limit: int) -> list[OutboxRecord]:
        self.claimed_before.append(older_than)
        return await super().claim_unsent(older_than, limit)

    async def prune_sent(self, sent_before: datetime, batch: int) -> int:
        self.pruned_before.append((sent_before, batch))
        pruned = await super().prune_sent(sent_before, batch)
        self.pruned.set()
        return pruned


async def _written(
    store: SpyOutbox, channel: str, *, ago: timedelta = timedelta(hours=2), sent: bool = False
) -> OutboxRecord:
    """An outbox row a decision wrote `ago` before NOW (marked sent then if `sent`)."""
    store.time = NOW - ago
    message = OutgoingMessage(channel=channel, message=Message(key="r", body=b"{}"))
    run = RunState(id=uuid.uuid4().hex, workflow="wf", version=1, created_at=store.time)
    applied, _ = await create_run(store, run, lambda s: Changes(state=s, outbox=[message]))
    if sent:
        await MemoryStore.mark_sent(store, [r.id for r in applied.outbox])  # not a relay call
    store.time = NOW
    return applied.outbox[0]


def _record(id: int, channel: str) -> OutboxRecord:
    return OutboxRecord(id=id, channel=channel, message=Message(key="r", body=b"{}"))


@pytest.mark.anyio
async def test_the_relay_publishes_one_batch_per_channel_then_marks_sent() -> None:
    """Rows are grouped by channel, published, and their ids marked sent."""
    store, transport = SpyOutbox(), FakeTransport()
    records = [_record(1, "tasks.a"), _record(2, "tasks.b"), _record(3, "tasks.a")]

    published = await Relay(store, transport).publish(records)

    assert published == 3
    assert {c: len(m) for c, m in transport.published.items()} == {"tasks.a": 2, "tasks.b": 1}
    assert sorted(store.sent) == [1, 2, 3]


@pytest.mark.anyio
async def test_a_failed_publish_leaves_rows_for_the_sweeper() -> None:
    """When the broker is down nothing is marked sent and nothing is raised."""
    store, transport = SpyOutbox(), FakeTransport()
    transport.fail_publish = True

    published = await Relay(store, transport).publish([_record(1, "tasks.a")])

    assert published == 0
    assert store.sent == []


@pytest.mark.anyio
async def test_the_sweeper_publishes_stale_unsent_rows() -> None:
    """A sweep claims rows older than the stale age and publishes them."""
    store = SpyOutbox()
    row = await _written(store, "tasks.a")
    transport = FakeTransport()
    clock = FakeClock(NOW)

    swept = await Relay(store, transport).sweep(clock, stale_seconds=10)

    assert swept == 1
    assert store.sent == [row.id]
    assert store.claimed_before[0] == NOW - timedelta(seconds=10)


@pytest.mark.anyio
async def test_the_sweeper_loop_also_prunes_rows_sent_before_the_retention() -> None:
    """Each sweep deletes the rows sent longer ago than the retention, and counts them."""
    store, transport = SpyOutbox(), FakeTransport()
    row = await _written(store, "tasks.a")
    for _ in range(3):
        await _written(store, "tasks.a", sent=True)
    telemetry = Telemetry.off("orchestrator")
    relay = Relay(store, transport, telemetry=telemetry)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.sweep_forever, FakeClock(NOW), 60, 10, 3600)
            await store.pruned.wait()
            tg.cancel_scope.cancel()

    assert store.sent == [row.id]  # swept first
    assert store.pruned_before == [(NOW - timedelta(seconds=3600), PRUNE_BATCH)]
    pruned = telemetry.metrics.registry.get_sample_value("treadle_outbox_pruned_total")
    assert pruned == 3


class SlowOutbox(SpyOutbox):
    """An outbox whose `mark_sent` waits for `release`, recording each call's ids."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[int]] = []
        self.release = anyio.Event()

    async def mark_sent(self, ids: Sequence[int]) -> None:
        self.calls.append(list(ids))
        await self.release.wait()
        await super().mark_sent(ids)


@pytest.mark.anyio
async def test_publishes_during_a_mark_sent_are_marked_together_in_the_next() -> None:
    """Group commit: ids published while a mark is in flight share one transaction."""
    store, transport = SlowOutbox(), FakeTransport()
    relay = Relay(store, transport)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.publish, [_record(1, "tasks.a")])
            await anyio.wait_all_tasks_blocked()
            for row in (2, 3):
                tg.start_soon(relay.publish, [_record(row, "tasks.a")])
            await anyio.wait_all_tasks_blocked()
            store.release.set()

    assert [sorted(ids) for ids in store.calls] == [[1], [2, 3]]  # trio runs 2, 3 in any order
    assert sorted(store.sent) == [1, 2, 3]
    assert relay.inflight == set()


@pytest.mark.anyio
async def test_a_publisher_does_not_wait_for_a_mark_another_is_making() -> None:
    """The second publisher returns once published; its row stays in `inflight` (the
    sweeper leaves it alone) until the first publisher has marked it too."""
    store, transport = SlowOutbox(), FakeTransport()
    relay = Relay(store, transport)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.publish, [_record(1, "tasks.a")])
            await anyio.wait_all_tasks_blocked()
            assert await relay.publish([_record(2, "tasks.a")]) == 1  # returns at once
            assert relay.inflight == {1, 2}
            assert store.sent == []
            store.release.set()

    assert store.calls == [[1], [2]]
    assert relay.inflight == set()


@pytest.mark.anyio
async def test_ids_queued_when_the_marking_publisher_is_cancelled_go_to_the_sweeper() -> None:
    store, transport = SlowOutbox(), FakeTransport()
    relay = Relay(store, transport)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.publish, [_record(1, "tasks.a")])
            await anyio.wait_all_tasks_blocked()
            await relay.publish([_record(2, "tasks.a")])
            tg.cancel_scope.cancel()

    assert relay.inflight == set()  # neither is marked: the sweeper may publish both again
    assert store.sent == []


@pytest.mark.anyio
async def test_the_sweeper_skips_rows_this_process_is_publishing() -> None:
    """A row still being published (not yet marked) is late, not lost: no second publish."""
    store, transport = SlowOutbox(), FakeTransport()
    row = await _written(store, "tasks.a")
    relay = Relay(store, transport)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(relay.publish, [row])
            await anyio.wait_all_tasks_blocked()  # published, its mark in flight
            swept = await relay.sweep(FakeClock(NOW), stale_seconds=10)
            store.release.set()

    assert swept == 0
    assert len(transport.published["tasks.a"]) == 1


@pytest.mark.anyio
async def test_the_alarm_wakes_a_sleep_for_a_sooner_timer() -> None:
    """A timer notified while the loop sleeps, due before it wakes, ends the sleep early."""
    alarm = TimerAlarm()
    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(alarm.sleep, NOW + timedelta(seconds=30), 30.0)
            await anyio.sleep(0.01)
            alarm.notify(NOW + timedelta(seconds=60))  # later: keeps sleeping
            await anyio.sleep(0.01)
            assert tg.cancel_scope.cancel_called is False
            alarm.notify(NOW + timedelta(seconds=1))


@pytest.mark.anyio
async def test_a_timer_notified_before_the_sleep_skips_it() -> None:
    """A notice between reading the store and sleeping is not missed."""
    alarm = TimerAlarm()
    alarm.reset()
    alarm.notify(NOW)
    with anyio.fail_after(1):
        await alarm.sleep(NOW + timedelta(seconds=30), 30.0)


class FakeRunService:
    """Records applied events; raises what the test asks for."""

    def __init__(self, error: Exception | None = None) -> None:
        self.applied: list[Any] = []
        self.error = error

    async def apply_event(self, run_id: str, event: Any, **_: Any) -> tuple[None, None]:
        if self.error is not None:
            raise self.error
        self.applied.append(event)
        return None, None


def _consumer(engine: FakeRunService, transient: Sequence[type[Exception]] = ()) -> EventConsumer:
    return EventConsumer(FakeTransport(), engine, prefetch=4, transient=transient)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_an_event_is_applied_then_acked() -> None:
    """A worker result is applied to its run and the delivery acked."""
    engine = FakeRunService()
    event = TaskCompleted(run_id="r1", task_id="t", attempt=1, output=1)
    delivery = delivery_of(event)

    await _consumer(engine).handle(delivery)

    assert engine.applied == [event]
    assert delivery.settled == "ack"


@pytest.mark.anyio
async def test_poison_events_are_dead_lettered() -> None:
    """A body that does not decode, or a dispatch on the events channel, is dead-lettered."""
    engine = FakeRunService()
    garbage = FakeDelivery(Message(key="k", body=b"\xff"))
    dispatch = DispatchTask(run_id="r", task_id="t", attempt=1, task_type="handler", queue="q")
    misplaced = FakeDelivery(to_message(envelope(dispatch, source="x")))

    await _consumer(engine).handle(garbage)
    await _consumer(engine).handle(misplaced)

    assert (garbage.settled, misplaced.settled) == ("dead", "dead")
    assert engine.applied == []


@pytest.mark.anyio
async def test_an_event_for_an_unknown_run_is_acked() -> None:
    """An event whose run does not exist is dropped (acked), not redelivered forever."""
    delivery = delivery_of(TaskCompleted(run_id="gone", task_id="t", attempt=1))

    await _consumer(FakeRunService(RunNotFound("gone"))).handle(delivery)

    assert delivery.settled == "ack"


@pytest.mark.anyio
async def test_a_store_failure_requeues_the_event() -> None:
    """When applying fails, the delivery goes back to the broker for a later try."""
    delivery = delivery_of(TaskCompleted(run_id="r1", task_id="t", attempt=1))

    await _consumer(FakeRunService(RuntimeError("database is gone"))).handle(delivery)

    assert delivery.settled == "requeue"


class _Busy(Exception):
    """Stands for the store's retryable error."""


class FlakyRunService(FakeRunService):
    """Fails the first `failures` applications with `_Busy`."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.tries = 0

    async def apply_event(self, run_id: str, event: Any, **_: Any) -> tuple[None, None]:
        self.tries += 1
        if self.tries <= self.failures:
            raise _Busy("try again")
        return await super().apply_event(run_id, event)


@pytest.mark.anyio
@pytest.mark.parametrize("failures", [0, 1, consumer_module.RETRY_ATTEMPTS - 1])
async def test_a_transient_error_is_retried_until_the_event_applies(failures: int) -> None:
    """The first try, then stamina's retries: RETRY_ATTEMPTS tries in all."""
    engine = FlakyRunService(failures)
    delivery = delivery_of(TaskCompleted(run_id="r1", task_id="t", attempt=1, output=1))

    with stamina.set_testing(True, attempts=consumer_module.RETRY_ATTEMPTS, cap=True):
        await _consumer(engine, transient=[_Busy]).handle(delivery)

    assert engine.tries == failures + 1
    assert delivery.settled == "ack"


@pytest.mark.anyio
async def test_an_event_still_failing_after_every_retry_is_requeued() -> None:
    engine = FlakyRunService(failures=consumer_module.RETRY_ATTEMPTS)
    delivery = delivery_of(TaskCompleted(run_id="r1", task_id="t", attempt=1, output=1))

    with stamina.set_testing(True, attempts=consumer_module.RETRY_ATTEMPTS, cap=True):
        await _consumer(engine, transient=[_Busy]).handle(delivery)

    assert engine.tries == consumer_module.RETRY_ATTEMPTS
    assert delivery.settled == "requeue"


@pytest.mark.anyio
async def test_an_error_that_is_not_transient_is_not_retried() -> None:
    engine = FlakyRunService(failures=1)
    delivery = delivery_of(TaskCompleted(run_id="r1", task_id="t", attempt=1, output=1))

    await _consumer(engine, transient=[]).handle(delivery)

    assert engine.tries == 1
    assert delivery.settled == "requeue"


@pytest.mark.anyio
async def test_a_result_carrying_its_start_is_applied_as_one_event() -> None:
    """The consumer hands a quick attempt's result, start included, to the engine as it
    came: the decider takes it as the start then the result."""
    engine = FakeRunService()
    began = NOW
    event = TaskCompleted(
        run_id="r1", task_id="t", attempt=2, output=1, worker="w", started_at=began
    )
    delivery = delivery_of(event)

    await _consumer(engine).handle(delivery)

    assert engine.applied == [event]
    assert delivery.settled == "ack"
