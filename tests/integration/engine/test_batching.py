"""Worker events that queue behind a decision on their run share its transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.integration.engine.conftest import SettingsFactory
from treadle.domain.events import Event, TaskCompleted, TaskStarted
from treadle.domain.state import TaskStatus
from treadle.modules.orchestrator import Relay, RunService
from treadle.ports import DecisionBatch, StateStore
from treadle.wiring import SystemClock, build

CHAIN: dict[str, Any] = {
    "name": "pair",
    "tasks": {"a": {"handler": "t.echo"}, "b": {"handler": "t.echo", "after": ["a"]}},
}


class _HeldStore:
    """The store, counting decision transactions on stored runs and holding the first
    until `release` is set."""

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.applies = 0
        self.entered = anyio.Event()
        self.release = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @asynccontextmanager
    async def deciding(self, run_ids: Collection[str]) -> AsyncIterator[DecisionBatch]:
        if run_ids:  # not a run's creation
            self.applies += 1
            if self.applies == 1:
                self.entered.set()
                await self.release.wait()
        async with self._store.deciding(run_ids) as batch:
            yield batch


@pytest.mark.anyio
async def test_events_queued_behind_a_decision_are_decided_in_its_transaction(
    make_settings: SettingsFactory,
) -> None:
    """A started and a completed event for one run cost one transaction, in order."""
    engine = build(make_settings())
    await engine.store.migrate()
    await engine.connect()
    try:
        held = _HeldStore(engine.store)
        settings = engine.settings.orchestrator
        relay = Relay(held, engine.transport)  # type: ignore[arg-type]
        runs = RunService(held, relay, SystemClock(), settings, source="test")  # type: ignore[arg-type]
        await runs.register_workflow(CHAIN)
        run, _ = await runs.start_run("pair", None, {})
        events: list[Event] = [
            TaskStarted(run_id=run.id, task_id="a", attempt=1),
            TaskCompleted(run_id=run.id, task_id="a", attempt=1, output=1),
        ]
        async with anyio.create_task_group() as tg:
            tg.start_soon(runs.apply_event, run.id, events[0])
            await held.entered.wait()
            tg.start_soon(runs.apply_event, run.id, events[1])
            await anyio.wait_all_tasks_blocked()
            held.release.set()

        assert held.applies == 1
        state = await engine.store.get_run(run.id)
        assert state.tasks["a"].status is TaskStatus.COMPLETED
        assert state.tasks["b"].status is TaskStatus.SCHEDULED
        page = await engine.store.list_history(run.id, 100, None)
        kinds = [h.type for h in page.items if h.task_id == "a"]
        assert kinds.index("task.started") < kinds.index("task.completed")
    finally:
        await engine.close()


@pytest.mark.anyio
async def test_a_result_carrying_its_start_is_decided_as_both_in_one_transaction(
    make_settings: SettingsFactory,
) -> None:
    """A quick attempt's one message (`started_at` on the result) is the start then the
    result: both in the history, in order, the task's start time its own, one commit."""
    engine = build(make_settings())
    await engine.store.migrate()
    await engine.connect()
    try:
        held = _HeldStore(engine.store)
        held.release.set()
        settings = engine.settings.orchestrator
        relay = Relay(held, engine.transport)  # type: ignore[arg-type]
        runs = RunService(held, relay, SystemClock(), settings, source="test")  # type: ignore[arg-type]
        await runs.register_workflow(CHAIN)
        run, _ = await runs.start_run("pair", None, {})
        began = SystemClock().now()
        result = TaskCompleted(
            run_id=run.id, task_id="a", attempt=1, output=1, worker="w-7", started_at=began
        )

        applied, _ = await runs.apply_event(run.id, result)

        assert held.applies == 1
        assert applied is not None
        state = await engine.store.get_run(run.id)
        assert state.tasks["a"].status is TaskStatus.COMPLETED
        assert state.tasks["a"].started_at == began
        assert state.tasks["b"].status is TaskStatus.SCHEDULED
        page = await engine.store.list_history(run.id, 100, None)
        entries = [h for h in page.items if h.task_id == "a"]
        assert [h.type for h in entries] == ["task.scheduled", "task.started", "task.completed"]
        assert entries[1].data is not None
        assert entries[1].data["worker"] == "w-7"
    finally:
        await engine.close()
