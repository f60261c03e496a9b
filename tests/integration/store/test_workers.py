"""The workers registry: reports upserted by id, read newest first, pruned by age; and the
dispatches waiting for a worker, grouped by workflow version and task."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.store.factories import at, make_run
from tests.stores import create_run
from treadle.domain.state import MapItem, MapProgress, RunState, TaskStatus
from treadle.ports import Changes, StateStore, WaitingDispatches, WorkerRecord

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace


def report(worker_id: str, seen: float, **fields: object) -> WorkerRecord:
    """A worker's report, last seen `seen` seconds after T0."""
    base = WorkerRecord(
        id=worker_id,
        host="box-1",
        pid=4242,
        queues=["default", "gpu"],
        handlers=["a.b", "c.d"],
        concurrency=8,
        inflight=0,
        started_at=at(0),
        last_seen=at(seen),
    )
    return replace(base, **fields)


async def test_a_report_replaces_the_workers_row_but_its_start(store: StateStore) -> None:
    """Upserting by id keeps one row per worker, with the latest report's fields and the
    first report's start time; the list is newest-seen first."""
    await store.record_worker(report("w1", 1))
    await store.record_worker(report("w2", 2, queues=["other"], handlers=[]))
    await store.record_worker(report("w1", 5, inflight=3, started_at=at(4), concurrency=9))

    found = await store.list_workers()

    assert [w.id for w in found] == ["w1", "w2"]
    assert found[0] == report("w1", 5, inflight=3, concurrency=9)
    assert found[1].queues == ["other"]
    assert found[1].handlers == []


async def test_workers_silent_since_before_a_cut_are_pruned(store: StateStore) -> None:
    """`prune_workers` deletes the rows last seen before the cut, and only those."""
    for n, seen in enumerate((10, 20, 30)):
        await store.record_worker(report(f"w{n}", seen))

    gone = await store.prune_workers(at(25))

    assert gone == 2
    assert [w.id for w in await store.list_workers()] == ["w2"]
    assert await store.prune_workers(at(25)) == 0


def waiting_run(state: RunState) -> Changes:
    """`first` dispatched at T0+3 (not started), `second` a map with items 0 and 1
    dispatched at T0+1 and T0+2, item 2 running and item 3 waiting out a backoff."""
    first = replace(state.tasks["first"], status=TaskStatus.SCHEDULED, scheduled_at=at(3))
    second = replace(
        state.tasks["second"],
        type="map",
        status=TaskStatus.RUNNING,
        progress=MapProgress(total=4, concurrency=4),
    )
    items = [
        MapItem(task_id="second", index=0, status=TaskStatus.SCHEDULED, scheduled_at=at(1)),
        MapItem(task_id="second", index=1, status=TaskStatus.SCHEDULED, scheduled_at=at(2)),
        MapItem(task_id="second", index=2, status=TaskStatus.RUNNING, scheduled_at=at(0)),
        MapItem(task_id="second", index=3, status=TaskStatus.SCHEDULED),
    ]
    tasks = {"first": first, "second": second}
    return Changes(state=replace(state, tasks=tasks, map_items=items))


async def test_waiting_dispatches_count_scheduled_tasks_and_items(store: StateStore) -> None:
    """Dispatched-but-unstarted tasks and map items are counted per workflow version and
    task with their oldest dispatch; running ones and backoff waits are not."""
    await create_run(store, make_run(workflow="wf"), waiting_run)
    await create_run(store, make_run(workflow="wf"), waiting_run)
    await create_run(store, make_run(workflow="idle"), lambda s: None)

    found = sorted(await store.waiting_dispatches(), key=lambda w: w.task_id)

    assert found == [
        WaitingDispatches(workflow="wf", version=1, task_id="first", count=2, oldest=at(3)),
        WaitingDispatches(workflow="wf", version=1, task_id="second", count=4, oldest=at(1)),
    ]
