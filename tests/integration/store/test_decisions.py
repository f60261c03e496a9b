"""Decisions: one transaction writes state, history, outbox and timers, or nothing."""

from __future__ import annotations

from datetime import timedelta

import anyio
import msgspec
import pytest

from tests.integration.store.factories import at, entry, make_run, message, timer, unchanged
from tests.stores import apply, create_run
from treadle.domain.errors import RunNotFound
from treadle.domain.events import CancelTimer, TimerKind
from treadle.domain.state import ErrorInfo, RunState, RunStatus, TaskStatus
from treadle.ports import Changes, RunFilter
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace


async def test_create_run_round_trips_every_field(store: SqlStore) -> None:
    """A created run reads back equal, with aware UTC times and tasks in their order."""
    run = replace(
        make_run(task_ids=("zeta", "alpha", "mid"), input={"sku": "a", "qty": [1, 2]}),
        status=RunStatus.RUNNING,
        started_at=at(1),
        error=ErrorInfo(type="E", message="m", traceback="tb", retryable=False),
        signals={"approve": [{"by": "ann"}, 2]},
        parent_run_id="parent",
        parent_task_id="child",
    )
    applied, created = await create_run(store, run, lambda s: None)
    loaded = await store.get_run(run.id)
    assert created
    assert applied.state == run
    assert loaded == run
    assert list(loaded.tasks) == ["zeta", "alpha", "mid"]
    assert loaded.created_at.utcoffset() == timedelta(0)


async def test_create_run_writes_the_decision_with_it(store: SqlStore) -> None:
    """create_run persists the decided state, history, outbox and timers and returns ids."""
    run = make_run()

    def start(state: RunState) -> Changes:
        first = replace(state.tasks["first"], status=TaskStatus.SCHEDULED, attempt=1)
        return Changes(
            state=replace(state, status=RunStatus.RUNNING, tasks={**state.tasks, "first": first}),
            history=[entry("run.started")],
            outbox=[message(state.id, "a"), message(state.id, "b")],
            start_timers=[timer(state.id, 30)],
        )

    applied, created = await create_run(store, run, start)
    loaded = await store.get_run(run.id)
    assert created
    assert loaded.status is RunStatus.RUNNING
    assert loaded.tasks["first"].status is TaskStatus.SCHEDULED
    assert [r.message.body for r in applied.outbox] == [b"a", b"b"]
    assert [r.id for r in await store.claim_unsent(at(10**9), 10)] == [r.id for r in applied.outbox]
    assert [h.type for h in (await store.list_history(run.id, 10, None)).items] == ["run.started"]
    assert await store.next_timer_at() == at(30)


async def test_repeated_idempotency_key_returns_the_first_run(store: SqlStore) -> None:
    """A second create with a taken key writes nothing and returns the existing run."""
    first = make_run(key="order-1")
    await create_run(store, first, unchanged)
    second = make_run(key="order-1", task_ids=("other",))
    applied, created = await create_run(
        store, second, lambda s: Changes(state=s, history=[entry("x")], outbox=[message(s.id)])
    )
    assert not created
    assert applied.state == first
    assert applied.outbox == []
    assert (await store.outbox_backlog())[0] == 0
    with pytest.raises(RunNotFound):
        await store.get_run(second.id)


async def test_concurrent_creates_with_one_key_make_one_run(
    store: SqlStore, twin: SqlStore
) -> None:
    """Racing creates with the same key (from two stores) leave exactly one run."""
    results: list[tuple[str, bool]] = []

    async def create(on: SqlStore) -> None:
        applied, created = await create_run(on, make_run(key="race"), unchanged)
        results.append((applied.state.id, created))

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(create, store if i % 2 else twin)
    assert sum(created for _, created in results) == 1
    assert len({run_id for run_id, _ in results}) == 1
    page = await store.list_runs(RunFilter(), limit=50, cursor=None)
    assert [r.id for r in page.items] == [results[0][0]]


async def test_apply_writes_state_history_outbox_and_timers(store: SqlStore) -> None:
    """apply persists every part of the decision and returns the outbox rows with ids."""
    run = make_run()
    await create_run(store, run, lambda s: Changes(state=s, start_timers=[timer(s.id, 5)]))

    def complete_first(state: RunState) -> Changes:
        done = replace(state.tasks["first"], status=TaskStatus.COMPLETED, output={"ok": True})
        return Changes(
            state=replace(state, tasks={**state.tasks, "first": done}, output=[1]),
            history=[entry("task.completed", 1, out=1), entry("task.dispatched", 2)],
            outbox=[message(state.id)],
            start_timers=[timer(state.id, 60, task_id="second")],
            cancel_timers=[
                CancelTimer(run_id=state.id, kind=TimerKind.RETRY, task_id="first", attempt=1)
            ],
        )

    applied = await apply(store, run.id, complete_first)
    assert applied is not None
    loaded = await store.get_run(run.id)
    assert loaded == applied.state
    assert loaded.tasks["first"].output == {"ok": True}
    assert loaded.output == [1]
    history = (await store.list_history(run.id, 10, None)).items
    assert [(h.type, h.data) for h in history] == [
        ("task.completed", {"out": 1}),
        ("task.dispatched", None),
    ]
    assert len(applied.outbox) == 1
    assert (await store.claim_unsent(at(10**9), 10)) == applied.outbox
    assert await store.next_timer_at() == at(60)


async def test_apply_returning_none_writes_nothing(store: SqlStore) -> None:
    """A decision of None leaves the run untouched and apply returns None."""
    run = make_run()
    await create_run(store, run, unchanged)
    assert await apply(store, run.id, lambda s: None) is None
    assert await store.get_run(run.id) == run
    assert (await store.list_history(run.id, 10, None)).items == []


async def test_a_failing_decision_rolls_everything_back(store: SqlStore) -> None:
    """An exception from decide propagates and nothing of the transaction remains."""
    run = make_run()
    await create_run(store, run, unchanged)

    class Boom(Exception):
        pass

    def explode(state: RunState) -> Changes:
        raise Boom

    with pytest.raises(Boom):
        await apply(store, run.id, explode)
    with pytest.raises(Boom):
        await create_run(store, make_run(), explode)
    assert await store.get_run(run.id) == run
    assert (await store.outbox_backlog())[0] == 0
    page = await store.list_runs(RunFilter(), limit=10, cursor=None)
    assert [r.id for r in page.items] == [run.id]


async def test_a_write_failure_rolls_the_whole_decision_back(store: SqlStore) -> None:
    """When a later write fails (a timer for an unknown run), earlier writes are undone."""
    run = make_run()
    await create_run(store, run, unchanged)

    def bad(state: RunState) -> Changes:
        return Changes(
            state=replace(state, status=RunStatus.RUNNING),
            history=[entry("x")],
            start_timers=[timer("no-such-run", 1)],
        )

    with pytest.raises(Exception, match="store apply failed"):
        await apply(store, run.id, bad)
    assert await store.get_run(run.id) == run
    assert (await store.list_history(run.id, 10, None)).items == []


async def test_apply_on_unknown_run_raises(store: SqlStore) -> None:
    """apply and get_run on an id that does not exist raise RunNotFound."""
    with pytest.raises(RunNotFound) as info:
        await apply(store, "missing", unchanged)
    assert info.value.run_id == "missing"
    with pytest.raises(RunNotFound):
        await store.get_run("missing")


async def test_apply_adds_changes_and_removes_tasks(store: SqlStore) -> None:
    """Tasks new in the decided state are inserted, changed ones updated, dropped deleted."""
    run = make_run(task_ids=("a", "b", "c"))
    await create_run(store, run, unchanged)

    def reshape(state: RunState) -> Changes:
        tasks = dict(state.tasks)
        del tasks["b"]
        tasks["a"] = replace(tasks["a"], status=TaskStatus.RUNNING, attempt=2)
        tasks["d"] = replace(tasks["c"], task_id="d", type="map")
        return Changes(state=replace(state, tasks=tasks))

    applied = await apply(store, run.id, reshape)
    assert applied is not None
    loaded = await store.get_run(run.id)
    assert loaded == applied.state
    assert list(loaded.tasks) == ["a", "c", "d"]


async def test_concurrent_applies_on_one_run_serialise(store: SqlStore, twin: SqlStore) -> None:
    """Concurrent applies (two stores, as two processes) each see the previous one's write."""
    run = make_run(input=0)
    await create_run(store, run, unchanged)

    def increment(state: RunState) -> Changes:
        count = state.input + 1
        return Changes(state=replace(state, input=count), history=[entry("inc", n=count)])

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lambda on=(store if i % 2 else twin): apply(on, run.id, increment))
    assert (await store.get_run(run.id)).input == 20
    history = (await store.list_history(run.id, 50, None)).items
    assert [h.data for h in history] == [{"n": n} for n in range(1, 21)]


async def test_concurrent_applies_see_each_others_task_writes(
    store: SqlStore, twin: SqlStore
) -> None:
    """A decision that waited for the run lock reads the task rows the previous one wrote."""
    run = make_run(task_ids=("first",))
    await create_run(store, run, unchanged)

    def bump_attempt(state: RunState) -> Changes:
        task = state.tasks["first"]
        bumped = replace(task, attempt=task.attempt + 1)
        return Changes(state=replace(state, tasks={**state.tasks, "first": bumped}))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(lambda on=(store if i % 2 else twin): apply(on, run.id, bump_attempt))
    assert (await store.get_run(run.id)).tasks["first"].attempt == 20


async def test_decision_for_another_run_is_refused(store: SqlStore) -> None:
    """A decision that returns a different run's state is an error, and writes nothing."""
    run = make_run()
    await create_run(store, run, unchanged)
    with pytest.raises(Exception, match="returned state of run"):
        await apply(store, run.id, lambda s: Changes(state=replace(s, id="other")))
    assert await store.get_run(run.id) == run


async def test_inflight_attempts_lists_scheduled_and_running_by_run(store: SqlStore) -> None:
    """Only scheduled/running attempts are listed, by run id, never splitting a run."""
    states = {
        "run-a": {"t1": TaskStatus.RUNNING, "t2": TaskStatus.SCHEDULED, "t3": TaskStatus.PENDING},
        "run-b": {"t1": TaskStatus.COMPLETED},
        "run-c": {"t1": TaskStatus.SCHEDULED, "t2": TaskStatus.FAILED},
    }
    for run_id, statuses in states.items():
        run = make_run(run_id, task_ids=list(statuses))
        tasks = {t: replace(run.tasks[t], status=s, attempt=3) for t, s in statuses.items()}
        await create_run(store, replace(run, tasks=tasks), unchanged)

    first = await store.inflight_attempts(limit=1, after=None)
    rest = await store.inflight_attempts(limit=1, after=first[-1].run_id)
    done = await store.inflight_attempts(limit=1, after=rest[-1].run_id)
    assert [(a.run_id, a.task_id, a.attempt) for a in first] == [
        ("run-a", "t1", 3),
        ("run-a", "t2", 3),
    ]
    assert [(a.run_id, a.task_id) for a in rest] == [("run-c", "t1")]
    assert done == []
