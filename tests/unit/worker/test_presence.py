"""A running worker reports itself to the store every interval, and a registry that fails
does not stop it reporting (or working)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from tests.unit.worker.fakes import FakeClock, FakeTransport, delivery_of
from treadle import TaskContext, handler
from treadle.config import WorkerSettings
from treadle.domain.events import DispatchTask
from treadle.modules.worker import HandlerRegistry, Worker
from treadle.ports import WorkerRecord
from treadle.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


@handler("presence.hold")
async def hold(ctx: TaskContext) -> str:
    await anyio.sleep(60)
    return "never"


registry = HandlerRegistry()
registry.add(hold)
SETTINGS = WorkerSettings(
    queues=["default", "gpu"], concurrency=3, report_interval_seconds=0.02, drain_seconds=0.1
)


async def _wait_for(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 -- the store has no event to wait on
        await anyio.sleep(0.01)


async def test_a_worker_reports_its_queues_handlers_and_inflight_attempts() -> None:
    """The worker's row names its host process, queues, handlers and concurrency; its
    in-flight count and last_seen follow the worker as it runs."""
    store, clock, transport = MemoryStore(), FakeClock(), FakeTransport()
    worker = Worker(transport, registry, SETTINGS, clock, "worker-1", presence=store)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await _wait_for(lambda: bool(store.data.workers))
            (first,) = store.data.workers.values()
            dispatch = DispatchTask(
                run_id="r1", task_id="a", attempt=1, task_type="handler",
                queue="default", handler="presence.hold",
            )  # fmt: skip
            await transport.feed("tasks.default").send(delivery_of(dispatch))
            clock.advance(30)
            await _wait_for(lambda: _only(store).inflight == 1)
            tg.cancel_scope.cancel()
    await transport.close()
    later = _only(store)
    assert first.id.startswith("worker-1:")
    assert (first.queues, first.handlers, first.concurrency, first.inflight) == (
        ["default", "gpu"],
        ["presence.hold"],
        3,
        0,
    )
    assert later.id == first.id
    assert later.started_at == first.started_at
    assert (later.last_seen - first.last_seen).total_seconds() == 30


def _only(store: MemoryStore) -> WorkerRecord:
    (record,) = store.data.workers.values()
    return record


class FlakyRegistry(MemoryStore):
    """Refuses the first two reports, as a database away would."""

    def __init__(self) -> None:
        super().__init__()
        self.refused = 0

    async def record_worker(self, worker: WorkerRecord) -> None:
        if self.refused < 2:
            self.refused += 1
            raise OSError("database away")
        await super().record_worker(worker)


async def test_a_failed_report_is_retried_at_the_next_tick() -> None:
    """A report the store refuses is logged and the next one goes through."""
    store, transport = FlakyRegistry(), FakeTransport()
    worker = Worker(transport, registry, SETTINGS, FakeClock(), "worker-2", presence=store)
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await _wait_for(lambda: bool(store.data.workers))
            tg.cancel_scope.cancel()
    await transport.close()
    assert store.refused == 2
