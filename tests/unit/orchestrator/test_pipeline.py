"""`DecisionPipeline`: who leads, what a group holds, and what followers see when it fails.

Over the in-memory store (no database), so these run on asyncio and trio.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import anyio
import pytest

from tests.stores import create_run
from treadle.domain.events import HistoryEntry
from treadle.domain.state import RunState, RunStatus
from treadle.modules.orchestrator._finishes import RunFinishes
from treadle.modules.orchestrator._pipeline import DecisionPipeline, Pending
from treadle.modules.orchestrator._timers import TimerAlarm
from treadle.observability import Telemetry
from treadle.ports import Applied, Changes, DecisionBatch, InflightAttempt, OutboxRecord
from treadle.store import StoreUnavailable
from treadle.store.memory import MemoryStore

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Recorder:
    """The store, recording the runs of each transaction; the first waits for `release`."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store
        self.groups: list[list[str]] = []
        self.release = anyio.Event()
        self.entered = anyio.Event()
        self.before: Callable[[int], Awaitable[None]] | None = None

    @asynccontextmanager
    async def deciding(self, run_ids: Collection[str]) -> AsyncIterator[DecisionBatch]:
        self.groups.append(sorted(run_ids))
        self.entered.set()
        await self.release.wait()
        if self.before is not None:
            await self.before(len(self.groups))
        async with self._store.deciding(run_ids) as batch:
            yield batch

    async def inflight_attempts(self, limit: int, after: str | None) -> list[InflightAttempt]:
        return await self._store.inflight_attempts(limit, after)


class _Published:
    async def publish(self, records: list[OutboxRecord]) -> int:
        return len(records)


async def _setup(runs: Collection[str], *, max_runs: int = 8) -> tuple[DecisionPipeline, Recorder]:
    store = MemoryStore()
    for run_id in runs:
        run = RunState(
            id=run_id, workflow="wf", version=1, created_at=NOW, status=RunStatus.RUNNING
        )
        await create_run(store, run, lambda s: None)
    recorder = Recorder(store)
    pipeline = DecisionPipeline(
        recorder,
        _Published(),
        alarm=TimerAlarm(),
        finishes=RunFinishes(),
        metrics=Telemetry.off("test").metrics,
        max_runs=max_runs,
    )
    return pipeline, recorder


def _noting(note: str) -> Pending:
    """An event whose decision writes one history entry named `note`."""

    def decide(state: RunState) -> Changes:
        return Changes(state=state, history=[HistoryEntry(type=note, at=NOW)])

    return Pending(decide, batchable=False)


async def _submit(pipeline: DecisionPipeline, run_id: str, note: str) -> Applied | None:
    pending = _noting(note)
    await pipeline.submit(run_id, pending)
    return pending.applied


async def test_a_lone_event_is_committed_at_once_by_its_own_caller() -> None:
    pipeline, recorder = await _setup(["r1"])
    recorder.release.set()

    applied = await _submit(pipeline, "r1", "a")

    assert applied is not None
    assert applied.state.id == "r1"
    assert recorder.groups == [["r1"]]


async def test_events_waiting_behind_a_busy_leader_share_the_next_group() -> None:
    runs = ["r1", *(f"r{i + 2}" for i in range(5))]
    pipeline, recorder = await _setup(runs)
    results: dict[str, Applied | None] = {}

    async def submit(run_id: str) -> None:
        results[run_id] = await _submit(pipeline, run_id, "x")

    async with anyio.create_task_group() as tg:
        tg.start_soon(submit, "r1")
        await recorder.entered.wait()
        for run_id in runs[1:]:
            tg.start_soon(submit, run_id)
        await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    assert recorder.groups == [["r1"], sorted(runs[1:])]
    assert {run_id: a.state.id for run_id, a in results.items() if a} == {r: r for r in runs}


async def test_a_group_holds_one_share_per_run_and_at_most_max_runs() -> None:
    pipeline, recorder = await _setup(["busy", "a", "b", "c", "d"], max_runs=3)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_submit, pipeline, "busy", "first")
        await recorder.entered.wait()
        for run_id, note in [("a", "a1"), ("a", "a2"), ("b", "b1"), ("c", "c1"), ("d", "d1")]:
            tg.start_soon(_submit, pipeline, run_id, note)
            await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    # a2 waits for the group after a1's (it must see a1's state); the size caps each group.
    assert recorder.groups == [["busy"], ["a", "b", "c"], ["a", "d"]]


async def test_a_failed_transaction_fails_the_event_of_a_lone_run() -> None:
    pipeline, recorder = await _setup(["r1"])
    recorder.release.set()

    async def gone(_: int) -> None:
        raise RuntimeError("database gone")

    recorder.before = gone
    with pytest.raises(RuntimeError, match="database gone"):
        await _submit(pipeline, "r1", "a")


async def test_followers_of_a_cancelled_leader_fail_retryably() -> None:
    pipeline, recorder = await _setup(["a", "l", "f"])
    recorder.release.set()
    first_release = anyio.Event()
    second_entered = anyio.Event()

    async def hold(call: int) -> None:
        if call == 1:
            await first_release.wait()
            return
        second_entered.set()
        await anyio.sleep_forever()  # the leader of this group is cancelled in here

    recorder.before = hold
    outcome: list[BaseException] = []

    async def follower() -> None:
        try:
            await _submit(pipeline, "f", "follower")
        except StoreUnavailable as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_submit, pipeline, "a", "first")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as leader_scope:
            async with anyio.create_task_group() as leader_group:
                leader_group.start_soon(_submit, pipeline, "l", "leader")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(follower)
                await anyio.wait_all_tasks_blocked()
                first_release.set()  # the leader, first in line, takes itself and f
                with anyio.fail_after(5):
                    await second_entered.wait()
                leader_scope.cancel()

    assert len(outcome) == 1
    assert "interrupted" in str(outcome[0])


async def test_a_cancelled_waiting_event_leaves_its_lane() -> None:
    pipeline, recorder = await _setup(["r1", "r2", "r3"])

    async with anyio.create_task_group() as tg:
        tg.start_soon(_submit, pipeline, "r1", "first")
        await recorder.entered.wait()
        with anyio.move_on_after(0.01):
            await _submit(pipeline, "r2", "given up")
        tg.start_soon(_submit, pipeline, "r3", "kept")
        await anyio.wait_all_tasks_blocked()
        recorder.release.set()

    assert recorder.groups == [["r1"], ["r3"]]
