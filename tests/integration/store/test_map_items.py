"""Map items: written apart from the run, loaded only as asked, paged, cancelled."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from tests.integration.store.factories import at, make_run
from tests.stores import apply, create_run
from treadle.domain.errors import RunNotFound, TaskNotFound
from treadle.domain.events import StartTimer, TimerKind
from treadle.domain.state import ItemQuery, MapItem, MapProgress, RunState, TaskStatus
from treadle.ports import Changes
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace


def with_map(state: RunState, total: int) -> Changes:
    """`first` becomes a running map of `total` pending items whose output is 2 * index."""
    progress = MapProgress(total=total, concurrency=10)
    first = replace(state.tasks["first"], type="map", status=TaskStatus.RUNNING, progress=progress)
    items = [
        MapItem(task_id="first", index=i, input={"n": i}, output=2 * i, status=TaskStatus.PENDING)
        for i in range(total)
    ]
    return Changes(state=replace(state, tasks={**state.tasks, "first": first}, map_items=items))


async def test_items_are_stored_apart_and_loaded_only_as_asked(store: SqlStore) -> None:
    """A run read or decided on carries no items unless the query names them."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 300))
    assert (await store.get_run(run.id)).map_items == []
    assert (await store.get_run(run.id)).tasks["first"].progress == MapProgress(
        total=300, concurrency=10
    )
    seen: list[RunState] = []

    def look(state: RunState) -> None:
        seen.append(state)

    query = ItemQuery(keys=[("first", 7), ("first", 250)])
    await apply(store, run.id, look, items=lambda s: query)
    assert [(i.index, i.input) for i in seen[0].map_items] == [(7, {"n": 7}), (250, {"n": 250})]
    whole = ItemQuery(whole=["first"])
    await apply(store, run.id, look, items=lambda s: whole)
    assert [i.output for i in seen[1].map_items] == [2 * i for i in range(300)]


async def test_changed_items_are_written_back(store: SqlStore) -> None:
    """An item changed by a decision is updated in place; the others stay as they were."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 3))

    def finish_one(state: RunState) -> Changes:
        (item,) = state.map_items
        done = replace(item, status=TaskStatus.COMPLETED, output="x", finished_at=at(1))
        return Changes(state=replace(state, map_items=[done]))

    query = ItemQuery(keys=[("first", 1)])
    await apply(store, run.id, finish_one, items=lambda s: query)
    page = await store.list_map_items(run.id, "first", 10, None)
    assert [(i.status, i.output) for i in page.items] == [
        ("pending", 0),
        ("completed", "x"),
        ("pending", 4),
    ]


async def test_items_page_in_index_order_with_a_cursor(store: SqlStore) -> None:
    """The items page walks a map's items by index."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 5))
    first = await store.list_map_items(run.id, "first", 2, None)
    second = await store.list_map_items(run.id, "first", 10, first.next_cursor)
    assert [i.index for i in first.items] == [0, 1]
    assert [i.index for i in second.items] == [2, 3, 4]
    assert second.next_cursor is None


def every_third_failed(total: int) -> Callable[[RunState], Changes]:
    """Like `with_map`, but items 0, 3, 6, ... failed."""

    def change(state: RunState) -> Changes:
        made = with_map(state, total)
        items = [
            replace(i, status=TaskStatus.FAILED) if i.index % 3 == 0 else i
            for i in made.state.map_items
        ]
        return Changes(state=replace(made.state, map_items=items))

    return change


async def test_items_page_filters_by_status_across_pages(store: SqlStore) -> None:
    """`status` keeps only the items in it, and its cursor pages on through the rest."""
    run = make_run()
    await create_run(store, run, every_third_failed(10))
    first = await store.list_map_items(run.id, "first", 2, None, status="failed")
    second = await store.list_map_items(run.id, "first", 10, first.next_cursor, status="failed")
    assert [i.index for i in first.items] == [0, 3]
    assert [i.index for i in second.items] == [6, 9]
    assert second.next_cursor is None
    assert {i.status for i in first.items + second.items} == {"failed"}
    none = await store.list_map_items(run.id, "first", 10, None, status="running")
    assert none.items == []


async def test_items_page_starts_at_from_index(store: SqlStore) -> None:
    """`from_index` starts the page at that index (with the status filter too), in one read."""
    run = make_run()
    await create_run(store, run, every_third_failed(1000))
    one = await store.list_map_items(run.id, "first", 1, None, from_index=777)
    assert [(i.index, i.input) for i in one.items] == [(777, {"n": 777})]
    rest = await store.list_map_items(run.id, "first", 3, one.next_cursor, from_index=777)
    assert [i.index for i in rest.items] == [778, 779, 780]
    failed = await store.list_map_items(run.id, "first", 2, None, status="failed", from_index=10)
    assert [i.index for i in failed.items] == [12, 15]
    past = await store.list_map_items(run.id, "first", 5, None, from_index=1000)
    assert past.items == []


async def test_items_page_of_unknown_run_or_non_map_task_raises(store: SqlStore) -> None:
    """Unknown run and a task that is not a map are told apart."""
    run = make_run()
    await create_run(store, run, lambda s: None)
    with pytest.raises(RunNotFound):
        await store.list_map_items("nope", "first", 10, None)
    with pytest.raises(TaskNotFound):
        await store.list_map_items(run.id, "first", 10, None)


async def test_cancel_items_marks_the_unfinished_ones(store: SqlStore) -> None:
    """`cancel_items` cancels every unfinished item of the map in one statement."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 4))
    await apply(store, run.id, lambda s: Changes(state=s, cancel_items=["first"]))
    page = await store.list_map_items(run.id, "first", 10, None)
    assert {i.status for i in page.items} == {"cancelled"}


async def test_item_timers_round_trip_with_their_index(store: SqlStore) -> None:
    """A map item's timer comes back due with its task id and item index."""
    run = make_run()
    await create_run(store, run, lambda s: None)
    start = StartTimer(
        run_id=run.id, kind=TimerKind.RETRY, task_id="first", attempt=2, item=41, fire_at=at(0)
    )
    await apply(store, run.id, lambda s: Changes(state=s, start_timers=[start]))
    (due,) = await store.claim_due_timers(at(5), 10, 30)
    assert (due.task_id, due.item, due.attempt) == ("first", 41, 2)


async def test_pending_query_loads_the_first_pending_items_from_an_index(store: SqlStore) -> None:
    """`ItemQuery.pending` skips items that already ran and stops at its count."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 8))

    def run_some(state: RunState) -> Changes:
        ran = [
            replace(i, status=TaskStatus.COMPLETED) for i in state.map_items if i.index in {2, 3, 5}
        ]
        return Changes(state=replace(state, map_items=ran))

    await apply(
        store,
        run.id,
        run_some,
        items=lambda s: ItemQuery(keys=[("first", 2), ("first", 3), ("first", 5)]),
    )
    seen: list[RunState] = []

    def look(state: RunState) -> None:
        seen.append(state)

    await apply(store, run.id, look, items=lambda s: ItemQuery(pending=[("first", 2, 3)]))
    assert [i.index for i in seen[0].map_items] == [4, 6, 7]


async def test_inflight_attempts_include_dispatched_map_items(store: SqlStore) -> None:
    """Recovery sees each dispatched item of a running map, not those awaiting a backoff."""
    run = make_run()
    await create_run(store, run, lambda s: with_map(s, 4))

    def dispatch(state: RunState) -> Changes:
        sent = [
            replace(state.map_items[0], status=TaskStatus.RUNNING, attempt=1, scheduled_at=at(1)),
            replace(state.map_items[1], status=TaskStatus.SCHEDULED, attempt=2, scheduled_at=at(1)),
            replace(state.map_items[2], status=TaskStatus.SCHEDULED, attempt=2),
        ]
        return Changes(state=replace(state, map_items=sent))

    await apply(
        store, run.id, dispatch, items=lambda s: ItemQuery(keys=[("first", i) for i in range(3)])
    )
    found = await store.inflight_attempts(limit=10, after=None)
    items = [(a.task_id, a.item, a.attempt) for a in found if a.item is not None]
    assert items == [("first", 0, 1), ("first", 1, 2)]
    assert [a.run_id for a in found] == sorted(a.run_id for a in found)
