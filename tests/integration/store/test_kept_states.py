"""A store keeps the states it committed, and reads a run again once another has decided."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.store.factories import entry, make_run
from tests.stores import apply, create_run
from treadle.domain.state import RunState, TaskStatus
from treadle.ports import Changes
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace


class _Attempt:
    """A decision that schedules one more attempt of `task_id`; records what it saw."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.seen: list[RunState] = []

    def __call__(self, state: RunState) -> Changes:
        self.seen.append(state)
        task = state.tasks[self.task_id]
        bumped = replace(task, status=TaskStatus.SCHEDULED, attempt=task.attempt + 1)
        tasks = {**state.tasks, self.task_id: bumped}
        return Changes(state=replace(state, tasks=tasks), history=[entry("task.scheduled")])


async def test_a_decision_by_another_store_is_seen_by_the_next_one_here(
    store: SqlStore, twin: SqlStore
) -> None:
    """Each store decides on what the other committed, never on a state it kept."""
    run = make_run()
    await create_run(store, run, lambda s: None)

    for deciding in (store, twin, store, store, twin):
        decide = _Attempt("first")
        await apply(deciding, run.id, decide)

    final = await store.get_run(run.id)
    assert final.tasks["first"].attempt == 5
    assert decide.seen[0].tasks["first"].attempt == 4


async def test_a_failed_decision_forgets_the_kept_state(store: SqlStore) -> None:
    """After a transaction that did not commit, the next decision reads the run again."""
    run = make_run()
    await create_run(store, run, lambda s: None)
    await apply(store, run.id, _Attempt("first"))

    def fail(state: RunState) -> Changes:
        raise RuntimeError("the decider failed")

    with pytest.raises(RuntimeError):
        await apply(store, run.id, fail)
    decide = _Attempt("first")
    await apply(store, run.id, decide)

    assert decide.seen[0].tasks["first"].attempt == 1
    assert (await store.get_run(run.id)).tasks["first"].attempt == 2
