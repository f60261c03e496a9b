"""Decisions on different runs waiting at the same time commit in one transaction.

On PostgreSQL and SQLite (MySQL decides one run per transaction). A group's outcome is
still each decision's own: one that raises, or whose run is gone, fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import msgspec
import pytest

from tests.integration.store.factories import at, entry, make_run, message
from treadle.domain.errors import RunNotFound
from treadle.domain.state import RunState, TaskStatus
from treadle.ports import Applied, Changes, Decide
from treadle.store._errors import StoreError
from treadle.store._group import GroupRequest
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace
RUNS = 12


@pytest.fixture(params=["sqlite", "postgres"])
def grouping_store(request: pytest.FixtureRequest) -> SqlStore:
    value: SqlStore = request.getfixturevalue(f"{request.param}_store")
    return value


def _schedule_first(state: RunState) -> Changes:
    task = replace(state.tasks["first"], status=TaskStatus.SCHEDULED, attempt=1)
    return Changes(
        state=replace(state, tasks={**state.tasks, "first": task}),
        history=[entry("task.scheduled", run=state.id)],
        outbox=[message(state.id, f"dispatch {state.id}")],
    )


def _count_groups(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch, method: str = "_decide_group"
) -> list[int]:
    """The size of each group `method` (`_decide_group` or `_create_group`) commits."""
    sizes: list[int] = []
    commit = getattr(store, method)

    async def counted(group: Sequence[GroupRequest[object]]) -> None:
        sizes.append(len(group))
        await commit(group)

    monkeypatch.setattr(store, method, counted)
    return sizes


async def _apply_all(
    store: SqlStore, decides: dict[str, Decide]
) -> dict[str, Applied | BaseException | None]:
    outcomes: dict[str, Applied | BaseException | None] = {}

    async def one(run_id: str) -> None:
        try:
            outcomes[run_id] = await store.apply(run_id, decides[run_id])
        except Exception as exc:
            outcomes[run_id] = exc

    async with anyio.create_task_group() as tg:
        for run_id in decides:
            tg.start_soon(one, run_id)
    return outcomes


async def test_concurrent_decisions_share_transactions_and_each_gets_its_own_outbox(
    grouping_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = grouping_store
    runs = [make_run() for _ in range(RUNS)]
    for run in runs:
        await store.create_run(run, lambda s: None)
    sizes = _count_groups(store, monkeypatch)

    outcomes = await _apply_all(store, {run.id: _schedule_first for run in runs})

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
        await store.create_run(run, lambda s: None)
    broken = runs[RUNS // 2].id

    def explode(state: RunState) -> Changes:
        raise ValueError("decider bug")

    decides: dict[str, Decide] = {run.id: _schedule_first for run in runs}
    decides[broken] = explode
    outcomes = await _apply_all(store, decides)

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
        await store.create_run(run, lambda s: None)
    decides: dict[str, Decide] = {run.id: _schedule_first for run in runs}
    decides["no-such-run"] = _schedule_first

    outcomes = await _apply_all(store, decides)

    assert isinstance(outcomes["no-such-run"], RunNotFound)
    assert all(isinstance(outcomes[run.id], Applied) for run in runs)


async def _create_all(
    store: SqlStore, runs: Sequence[RunState]
) -> list[tuple[Applied, bool] | BaseException]:
    outcomes: list[tuple[Applied, bool] | BaseException] = [ValueError("not run")] * len(runs)

    async def one(i: int) -> None:
        try:
            outcomes[i] = await store.create_run(runs[i], _schedule_first)
        except Exception as exc:
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(len(runs)):
            tg.start_soon(one, i)
    return outcomes


async def test_concurrent_creates_share_transactions_and_each_gets_its_own_outbox(
    grouping_store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = grouping_store
    sizes = _count_groups(store, monkeypatch, "_create_group")
    runs = [make_run() for _ in range(RUNS)]

    outcomes = await _create_all(store, runs)

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
    await store.create_run(taken, lambda s: None)
    runs = [make_run() for _ in range(RUNS)]
    runs[RUNS // 2] = make_run(taken.id)

    outcomes = await _create_all(store, runs)

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

    outcomes = await _create_all(store, runs)

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

    async def one(run: RunState) -> None:
        outcomes.append(await store.create_run(run, dispatch_three))

    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(one, run)

    stored = {r.id: r.message.body for r in await store.claim_unsent(at(10**9), 1000)}
    records = [record for applied, _ in outcomes for record in applied.outbox]
    assert len(records) == 3 * RUNS
    assert {r.id: r.message.body for r in records} == stored
