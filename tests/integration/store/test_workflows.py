"""Workflow definitions: versioned by content, race-safe, listed with cursors."""

from __future__ import annotations

import anyio
import pytest

from treadle.domain.errors import InvalidCursor, WorkflowNotFound
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


async def test_new_version_only_when_the_latest_digest_differs(store: SqlStore) -> None:
    """Same content keeps the version; new content (even old content again) bumps it."""
    one, created_one = await store.save_workflow("order", {"v": 1}, "d1")
    same, created_same = await store.save_workflow("order", {"v": 1}, "d1")
    two, _ = await store.save_workflow("order", {"v": 2}, "d2")
    back, created_back = await store.save_workflow("order", {"v": 1}, "d1")
    assert (one.version, created_one) == (1, True)
    assert (same, created_same) == (one, False)
    assert two.version == 2
    assert (back.version, created_back) == (3, True)
    assert back.definition == {"v": 1}


async def test_get_workflow_latest_or_by_version(store: SqlStore) -> None:
    """get_workflow returns the latest by default, a given version, or WorkflowNotFound."""
    await store.save_workflow("order", {"tasks": {"a": {"handler": "h"}}}, "d1")
    await store.save_workflow("order", {"tasks": {}}, "d2")
    assert (await store.get_workflow("order")).version == 2
    first = await store.get_workflow("order", 1)
    assert first.definition == {"tasks": {"a": {"handler": "h"}}}
    assert first.created_at.tzinfo is not None
    with pytest.raises(WorkflowNotFound) as info:
        await store.get_workflow("order", 9)
    assert (info.value.name, info.value.version) == ("order", 9)
    with pytest.raises(WorkflowNotFound):
        await store.get_workflow("nope")


async def test_concurrent_saves_of_one_definition_make_one_version(
    store: SqlStore, twin: SqlStore
) -> None:
    """Racing saves of the same content (from two stores) create version 1 exactly once."""
    created: list[bool] = []

    async def save(on: SqlStore) -> None:
        stored, was_created = await on.save_workflow("race", {"x": 1}, "same")
        assert stored.version == 1
        created.append(was_created)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(save, store if i % 2 else twin)
    assert created.count(True) == 1


async def test_concurrent_saves_of_different_definitions_get_consecutive_versions(
    store: SqlStore, twin: SqlStore
) -> None:
    """Racing saves of different content each get their own version, with no gaps."""
    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(
                lambda i=i: (store if i % 2 else twin).save_workflow("race", {"i": i}, f"d{i}")
            )
    page = await store.list_versions("race", 20, None)
    assert [w.version for w in page.items] == list(range(8, 0, -1))
    assert len({w.digest for w in page.items}) == 8


async def test_list_workflows_shows_the_latest_of_each_by_name(store: SqlStore) -> None:
    """list_workflows pages through names in order, each at its latest version."""
    for name in ("c", "a", "b"):
        await store.save_workflow(name, {}, f"{name}1")
    await store.save_workflow("a", {"new": True}, "a2")
    first = await store.list_workflows(2, None)
    second = await store.list_workflows(2, first.next_cursor)
    assert [(w.name, w.version) for w in first.items] == [("a", 2), ("b", 1)]
    assert [(w.name, w.version) for w in second.items] == [("c", 1)]
    assert second.next_cursor is None


async def test_list_versions_pages_newest_first(store: SqlStore) -> None:
    """list_versions pages newest first; unknown names and bad cursors raise."""
    for i in range(3):
        await store.save_workflow("w", {"i": i}, f"d{i}")
    first = await store.list_versions("w", 2, None)
    second = await store.list_versions("w", 2, first.next_cursor)
    assert [w.version for w in first.items] == [3, 2]
    assert [w.version for w in second.items] == [1]
    with pytest.raises(WorkflowNotFound):
        await store.list_versions("nope", 2, None)
    with pytest.raises(InvalidCursor):
        await store.list_versions("w", 2, "bogus")
