"""Decisions on different runs waiting at the same time commit in one transaction.

The orchestrator's pipeline groups them over a real store (SQLite, PostgreSQL, MySQL). A
group's outcome is still each decision's own: one that raises, or whose run is gone,
fails alone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager

import anyio
import msgspec
import pytest

from tests.integration.store.factories import at, entry, make_run, message
from tests.stores import create_run
from treadle.domain.errors import RunNotFound
from treadle.domain.state import RunState, TaskStatus
from treadle.modules.orchestrator._finishes import RunFinishes
from treadle.modules.orchestrator._pipeline import Decide, DecisionPipeline, Pending
from treadle.modules.orchestrator._timers import TimerAlarm
from treadle.observability import Telemetry
from treadle.ports import Applied, Changes, DecisionBatch, InflightAttempt, OutboxRecord
from treadle.store._errors import StoreError
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace
RUNS = 12


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def grouping_store(request: pytest.FixtureRequest) -> SqlStore:
    value: SqlStore = request.getfixturevalue(f"{request.param}_store")
    return value


class _Published:
    """The pipeline's relay, recording what it was handed (the broker is not the point)."""

    def __init__(self) -> None:
        self.records: list[OutboxRecord] = []

    async def publish(self, records: Sequence[OutboxRecord]) -> int:
        self.records += records
        return len(records)


class _Counted:
    """The store, recording the size of each transaction: the runs it locks and creates."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.sizes: list[int] = []

    @asynccontextmanager
    async def deciding(self, run_ids: Collection[str]) -> AsyncIterator[DecisionBatch]:
        async with self._store.deciding(run_ids) as batch:
            creates: list[str] = []
            create = batch.create

            def counted(state: RunState, changes: Changes | None) -> None:
                creates.append(state.id)
                create(state, changes)

            batch.create = counted  # type: ignore[method-assign]
            yield batch
        self.sizes.append(len(set(run_ids)) + len(creates))

    async def inflight_attempts(self, limit: int, after: str | None) -> list[InflightAttempt]:
        return await self._store.inflight_attempts(limit, after)


def _pipeline(store: SqlStore) -> tuple[DecisionPipeline, _Counted]:
    counted = _Counted(store)
    pipeline = DecisionPipeline(
        counted,
        _Published(),
        alarm=TimerAlarm(),
        finishes=RunFinishes(),
        metrics=Telemetry.off("test").metrics,
    )
    return pipeline, counted


def _schedule_first(state: RunState) -> Changes:
    task = replace(state.tasks["first"], status=TaskStatus.SCHEDULED, attempt=1)
    return Changes(
        state=replace(state, tasks={**state.tasks, "first": task}),
        history=[entry("task.scheduled", run=state.id)],
        outbox=[message(state.id, f"dispatch {state.id}")],
    )


async def _apply_all(
    pipeline: DecisionPipeline, decides: dict[str, Decide]
) -> dict[str, Applied | BaseException | None]:
    outcomes: dict[str, Applied | BaseException | None] = {}

    async def one(run_id: str) -> None:
        pending = Pending(decides[run_id], batchable=False)
        try:
            await pipeline.submit(run_id, pending)
        except Exception as exc:
            outcomes[run_id] = exc
        else:
            outcomes[run_id] = pending.applied

    async with anyio.create_task_group() as tg:
        for run_id in decides:
            tg.start_soon(one, run_id)
    return outcomes


async def test_concurrent_decisions_share_transactions_and_each_gets_its_own_outbox(
    grouping_store: SqlStore,
) -> None:
    store = grouping_store
    runs = [make_run() for _ in range(RUNS)]
    for run in runs:
        await create_run(store, run, lambda s: None)
    pipeline, counted = _pipeline(store)
    sizes = counted.sizes

    outcomes = await _apply_all(pipeline, {run.id: _schedule_first for run in runs})

    assert sum(sizes) == RUNS
    assert len(sizes) < RUNS  # the decisions that waited behind the first went together
    for run in runs:
        applied = outcomes[run.id]
        assert isinstance(applied, Applied)
        assert [r.message.body for r in applied.outbox] == [f"dispatch {run.id}".encode()]
        stored = await store.get_run(run.id)
        assert stored.tasks["first"].status is TaskStatus.SCHEDULED
        history = await store.list_history(run.id, limit=10, cursor=None)
        assert [h.data for h in history.items] == [{"run": run.id}]
    ids = [r.id for run in runs for r in outcomes[run.id].outbox]  # type: ignore[union-attr]
    assert len(set(ids)) == RUNS


async def test_a_decision_that_raises_fails_alone_and_the_rest_commit(
    grouping_store: SqlStore,
) -> None:
    store = grouping_store
    runs = [make_run() for _ in range(RUNS)]
    for run in runs:
        await create_run(store, run, lambda s: None)
    broken = runs[RUNS // 2].id

    def explode(state: RunState) -> Changes:
        raise ValueError("decider bug")

    decides: dict[str, Decide] = {run.id: _schedule_first for run in runs}
    decides[broken] = explode
    outcomes = await _apply_all(_pipeline(store)[0], decides)

    assert isinstance(outcomes[broken], ValueError)
    assert (await store.get_run(broken)).tasks["first"].status is TaskStatus.PENDING
    for run in runs:
        if run.id != broken:
            assert isinstance(outcomes[run.id], Applied)
            assert (await store.get_run(run.id)).tasks["first"].status is TaskStatus.SCHEDULED


async def test_a_missing_run_in_a_group_is_not_found_and_the_rest_commit(
    grouping_store: SqlStore,
) -> None:
    store = grouping_store
    runs = [make_run() for _ in range(RUNS)]
    for run in runs:
        await create_run(store, run, lambda s: None)
    decides: dict[str, Decide] = {run.id: _schedule_first for run in runs}
    decides["no-such-run"] = _schedule_first

    outcomes = await _apply_all(_pipeline(store)[0], decides)

    assert isinstance(outcomes["no-such-run"], RunNotFound)
    assert all(isinstance(outcomes[run.id], Applied) for run in runs)


async def _create(
    pipeline: DecisionPipeline, run: RunState, decide: Decide = _schedule_first
) -> tuple[Applied, bool]:
    pending = Pending(decide, batchable=False, create=run)
    lane = run.id if run.idempotency_key is None else f"key:{run.idempotency_key}"
    await pipeline.submit(lane, pending)
    assert pending.applied is not None
    return pending.applied, pending.created


async def _create_all(
    pipeline: DecisionPipeline, runs: Sequence[RunState]
) -> list[tuple[Applied, bool] | BaseException]:
    outcomes: list[tuple[Applied, bool] | BaseException] = [ValueError("not run")] * len(runs)

    async def one(i: int) -> None:
        try:
            outcomes[i] = await _create(pipeline, runs[i])
        except Exception as exc:
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(runs)):
            tg.start_soon(one, i)
    return outcomes


async def test_concurrent_creates_share_transactions_and_each_gets_its_own_outbox(
    grouping_store: SqlStore,
) -> None:
    store = grouping_store
    pipeline, counted = _pipeline(store)
    sizes = counted.sizes
    runs = [make_run() for _ in range(RUNS)]

    outcomes = await _create_all(pipeline, runs)

    assert sum(sizes) == RUNS
    assert len(sizes) < RUNS
    for run, outcome in zip(runs, outcomes, strict=True):
        assert not isinstance(outcome, BaseException)
        applied, created = outcome
        assert created
        assert [r.message.body for r in applied.outbox] == [f"dispatch {run.id}".encode()]
        stored = await store.get_run(run.id)
        assert stored.tasks["first"].status is TaskStatus.SCHEDULED
        assert list(stored.tasks) == ["first", "second"]
        history = await store.list_history(run.id, limit=10, cursor=None)
        assert [h.data for h in history.items] == [{"run": run.id}]


async def test_a_create_that_fails_in_a_group_fails_alone(
    grouping_store: SqlStore,
) -> None:
    """A run id already taken fails its own create; the others in its group are created."""
    store = grouping_store
    taken = make_run()
    await create_run(store, taken, lambda s: None)
    runs = [make_run() for _ in range(RUNS)]
    runs[RUNS // 2] = make_run(taken.id)

    outcomes = await _create_all(_pipeline(store)[0], runs)

    assert isinstance(outcomes[RUNS // 2], StoreError)
    for i, run in enumerate(runs):
        if i != RUNS // 2:
            assert not isinstance(outcomes[i], BaseException)
            assert (await store.get_run(run.id)).tasks["first"].status is TaskStatus.SCHEDULED
    assert (await store.get_run(taken.id)).tasks["first"].status is TaskStatus.PENDING


async def test_creates_with_one_idempotency_key_still_make_one_run(
    grouping_store: SqlStore,
) -> None:
    store = grouping_store
    runs = [make_run(key="order-7") for _ in range(4)] + [make_run() for _ in range(4)]

    outcomes = await _create_all(_pipeline(store)[0], runs)

    keyed = [o for o in outcomes[:4] if not isinstance(o, BaseException)]
    assert sorted(created for _, created in keyed) == [False, False, False, True]
    assert len({applied.state.id for applied, _ in keyed}) == 1
    assert all(not isinstance(o, BaseException) and o[1] for o in outcomes[4:])


async def test_each_outbox_record_of_a_grouped_create_names_its_own_row(
    grouping_store: SqlStore,
) -> None:
    """Runs created together with several messages each: every record's id is the row
    holding that very message."""
    store = grouping_store

    def dispatch_three(state: RunState) -> Changes:
        changes = _schedule_first(state)
        extra = [message(state.id, f"{state.id} #{i}") for i in range(2)]
        return msgspec.structs.replace(changes, outbox=[*changes.outbox, *extra])

    runs = [make_run() for _ in range(RUNS)]
    outcomes: list[tuple[Applied, bool]] = []
    pipeline = _pipeline(store)[0]

    async def one(run: RunState) -> None:
        outcomes.append(await _create(pipeline, run, dispatch_three))

    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(one, run)

    stored = {r.id: r.message.body for r in await store.claim_unsent(at(10**9), 1000)}
    records = [record for applied, _ in outcomes for record in applied.outbox]
    assert len(records) == 3 * RUNS
    assert {r.id: r.message.body for r in records} == stored
