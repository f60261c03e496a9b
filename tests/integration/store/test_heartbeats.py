"""The last heartbeat of a task and of a map item is stored and read back."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.store.factories import at, make_run
from tests.stores import apply, create_run
from treadle.domain.state import Heartbeat, ItemQuery, MapItem, MapProgress, RunState, TaskStatus
from treadle.ports import Changes
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

replace = msgspec.structs.replace
BEAT = Heartbeat(at=at(5), attempt=2, details={"done": 40, "of": [1, 2]})


async def test_a_task_heartbeat_is_written_by_a_decision_and_read_back(store: SqlStore) -> None:
    """A decision that only changes a task's heartbeat persists it, details and all."""
    run = make_run()
    await create_run(store, run, lambda s: None)

    def beat(state: RunState) -> Changes:
        first = replace(state.tasks["first"], status=TaskStatus.RUNNING, heartbeat=BEAT)
        return Changes(state=replace(state, tasks={**state.tasks, "first": first}))

    await apply(store, run.id, beat)
    assert (await store.get_run(run.id)).tasks["first"].heartbeat == BEAT


async def test_a_map_item_heartbeat_is_stored_with_its_item(store: SqlStore) -> None:
    """An item's heartbeat is written with the item and shown on the items page."""
    run = make_run()

    def with_map(state: RunState) -> Changes:
        progress = MapProgress(total=2, concurrency=2)
        first = replace(state.tasks["first"], type="map", status=TaskStatus.RUNNING)
        first = replace(first, progress=progress)
        items = [MapItem(task_id="first", index=i, status=TaskStatus.RUNNING) for i in (0, 1)]
        return Changes(state=replace(state, tasks={**state.tasks, "first": first}, map_items=items))

    await create_run(store, run, with_map)

    def beat(state: RunState) -> Changes:
        (item,) = state.map_items
        return Changes(state=replace(state, map_items=[replace(item, heartbeat=BEAT)]))

    await apply(store, run.id, beat, items=lambda s: ItemQuery(keys=[("first", 1)]))
    page = await store.list_map_items(run.id, "first", 10, None)
    assert [i.heartbeat for i in page.items] == [None, BEAT]
