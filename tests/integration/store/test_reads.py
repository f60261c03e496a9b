"""Reads for the API: run lists with keyset pagination, history pages, cursors."""

from __future__ import annotations

import base64

import msgspec
import pytest

from tests.integration.store.factories import at, entry, make_run, timer, unchanged
from tests.stores import apply, create_run
from treadle.domain.errors import InvalidCursor, RunNotFound
from treadle.domain.events import StartTimer, TimerKind
from treadle.domain.state import RunStatus
from treadle.ports import Changes, RunFilter
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


async def _all_pages(store: SqlStore, limit: int, **filters: str) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page = await store.list_runs(RunFilter(**filters), limit=limit, cursor=cursor)
        pages.append([r.id for r in page.items])
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


async def test_list_runs_is_newest_first_across_pages_with_equal_times(store: SqlStore) -> None:
    """Keyset pages cover every run once, newest first, even when created_at ties."""
    ids = []
    for i in range(7):
        run = make_run(f"run-{i}", created_at=at(i // 3))  # three runs share each instant
        await create_run(store, run, unchanged)
        ids.append(run.id)
    expected = sorted(ids, key=lambda r: (int(r[-1]) // 3, r), reverse=True)
    pages = await _all_pages(store, limit=2)
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [r for p in pages for r in p] == expected


async def test_list_runs_filters_by_workflow_and_status(store: SqlStore) -> None:
    """The workflow and status filters combine, and paginate like the full list."""
    for i, (workflow, status) in enumerate(
        [("a", RunStatus.RUNNING), ("a", RunStatus.COMPLETED), ("b", RunStatus.RUNNING)] * 2
    ):
        await create_run(
            store, make_run(f"r{i}", workflow=workflow, status=status, created_at=at(i)), unchanged
        )
    assert await _all_pages(store, 1, workflow="a", status="running") == [["r3"], ["r0"]]
    assert await _all_pages(store, 10, workflow="b") == [["r5", "r2"]]
    assert await _all_pages(store, 10, status="completed") == [["r4", "r1"]]
    assert await _all_pages(store, 10, workflow="none") == [[]]


async def test_list_runs_filters_by_key_and_creation_range(store: SqlStore) -> None:
    """The idempotency key finds its run; the time range is [created_after, created_before)."""
    for i in range(5):
        run = make_run(f"r{i}", created_at=at(i), key=f"k{i}" if i % 2 else None)
        await create_run(store, run, unchanged)
    by_key = await store.list_runs(RunFilter(idempotency_key="k3"), limit=5, cursor=None)
    assert [(r.id, r.idempotency_key) for r in by_key.items] == [("r3", "k3")]
    window = RunFilter(workflow="wf", created_after=at(1), created_before=at(4))
    ranged = await store.list_runs(window, limit=1, cursor=None)
    assert [r.id for r in ranged.items] == ["r3"]
    rest = await store.list_runs(window, limit=5, cursor=ranged.next_cursor)
    assert [r.id for r in rest.items] == ["r2", "r1"]
    assert rest.next_cursor is None


async def test_count_runs_counts_each_status_up_to_the_cap(store: SqlStore) -> None:
    """Counts cover every status, honour the filters and stop at the cap."""
    statuses = [RunStatus.RUNNING] * 3 + [RunStatus.FAILED] + [RunStatus.RUNNING]
    for i, status in enumerate(statuses):
        workflow = "other" if i == 4 else "wf"
        run = make_run(f"r{i}", workflow=workflow, status=status, created_at=at(i))
        await create_run(store, run, unchanged)
    counted = await store.count_runs(workflow="wf", created_after=None, cap=10)
    assert counted.counts == {s.value: 0 for s in RunStatus} | {"running": 3, "failed": 1}
    assert not counted.capped
    capped = await store.count_runs(workflow=None, created_after=at(1), cap=2)
    assert (capped.counts["running"], capped.counts["failed"], capped.capped) == (2, 1, True)


async def test_list_runs_summary_carries_the_run_facts(store: SqlStore) -> None:
    """A list entry has the run's workflow, version, status, times and idempotency key."""
    run = make_run(key="k-1", status=RunStatus.RUNNING)
    await create_run(store, run, unchanged)
    (summary,) = (await store.list_runs(RunFilter(), limit=5, cursor=None)).items
    assert (summary.id, summary.workflow, summary.version) == (run.id, "wf", 1)
    assert (summary.status, summary.idempotency_key) == ("running", "k-1")
    assert summary.created_at == run.created_at
    assert summary.paused is False


async def test_list_runs_summary_says_a_run_is_paused(store: SqlStore) -> None:
    """A paused run's list entry says so (the dashboard's list must not show it running)."""
    run = make_run(status=RunStatus.RUNNING)
    await create_run(store, run, unchanged)
    paused = msgspec.structs.replace(run, paused=True)
    await apply(store, run.id, lambda s: Changes(state=paused))
    (summary,) = (await store.list_runs(RunFilter(), limit=5, cursor=None)).items
    assert (summary.status, summary.paused) == ("running", True)


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(msgspec.json.encode(["runs", "not-a-time", "x"])).decode(),
        base64.urlsafe_b64encode(msgspec.json.encode(["history", 3])).decode(),
        base64.urlsafe_b64encode(msgspec.json.encode({"runs": 1})).decode(),
    ],
)
async def test_a_bad_cursor_is_refused(store: SqlStore, cursor: str) -> None:
    """A cursor Treadle did not issue for this list raises InvalidCursor, not a 500."""
    with pytest.raises(InvalidCursor) as info:
        await store.list_runs(RunFilter(), limit=5, cursor=cursor)
    assert info.value.cursor == cursor


async def test_history_pages_oldest_first(store: SqlStore) -> None:
    """A run's history pages in insertion order with a cursor between pages."""
    run = make_run()
    await create_run(
        store, run, lambda s: Changes(state=s, history=[entry(f"e{i}", i) for i in range(5)])
    )
    first = await store.list_history(run.id, 3, None)
    second = await store.list_history(run.id, 3, first.next_cursor)
    assert [h.type for h in first.items] == ["e0", "e1", "e2"]
    assert [h.type for h in second.items] == ["e3", "e4"]
    assert second.next_cursor is None
    assert second.items[0].at == at(3)


async def test_history_of_unknown_run_or_with_bad_cursor_raises(store: SqlStore) -> None:
    """An unknown run raises RunNotFound; a runs cursor on history raises InvalidCursor."""
    run = make_run()
    await create_run(store, run, unchanged)
    assert (await store.list_history(run.id, 5, None)).items == []
    with pytest.raises(RunNotFound):
        await store.list_history("missing", 5, None)
    await create_run(store, make_run(created_at=at(-1)), unchanged)
    runs_cursor = (await store.list_runs(RunFilter(), limit=1, cursor=None)).next_cursor
    assert runs_cursor is not None
    with pytest.raises(InvalidCursor):
        await store.list_history(run.id, 5, runs_cursor)


async def test_list_timers_answers_one_runs_timers_earliest_first(store: SqlStore) -> None:
    """A run's timers (leased ones too, a map item's with its index), by fire time; another
    run's are not among them (the API tells from them what each task waits for)."""
    mine, other = make_run("mine"), make_run("other")
    for run in (mine, other):
        await create_run(store, run, unchanged)
    late, early = timer("mine", 60, task_id="a"), timer("mine", 5, task_id="b", attempt=3)
    item = StartTimer(
        run_id="mine", kind=TimerKind.SLEEP, task_id="m", item=4, attempt=1, fire_at=at(30)
    )
    await apply(store, "mine", lambda s: Changes(state=s, start_timers=[late, early, item]))
    await apply(store, "other", lambda s: Changes(state=s, start_timers=[timer("other", 1)]))
    await store.claim_due_timers(at(10), 10, 30)  # leases `early` (and the other run's)
    found = await store.list_timers("mine")
    assert [(t.task_id, t.item, t.attempt, t.fire_at) for t in found] == [
        ("b", None, 3, at(5)),
        ("m", 4, 1, at(30)),
        ("a", None, 1, at(60)),
    ]
    assert await store.list_timers("no-such-run") == []
