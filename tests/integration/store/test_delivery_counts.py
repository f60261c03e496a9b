"""Workers' counts of their deliveries of each attempt, kept per attempt and map item."""

from __future__ import annotations

import anyio
import pytest

from tests.integration.store.factories import make_run, unchanged
from tests.stores import create_run
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


async def test_each_delivery_of_an_attempt_counts_one_more(store: SqlStore) -> None:
    """1, 2, 3 for one attempt; another attempt, task or map item starts again at 1."""
    run = make_run()
    await create_run(store, run, unchanged)
    counts = [await store.count_delivery(run.id, "first", 1, None) for _ in range(3)]
    assert counts == [1, 2, 3]
    assert await store.count_delivery(run.id, "first", 2, None) == 1
    assert await store.count_delivery(run.id, "second", 1, None) == 1
    assert await store.count_delivery(run.id, "first", 1, 0) == 1
    assert await store.count_delivery(run.id, "first", 1, 0) == 2
    assert await store.count_delivery(run.id, "first", 1, None) == 4


async def test_concurrent_deliveries_get_distinct_counts(store: SqlStore) -> None:
    """Two workers counting the same attempt at once get 1 and 2, never 1 twice."""
    run = make_run()
    await create_run(store, run, unchanged)
    counts: list[int] = []

    async def count() -> None:
        counts.append(await store.count_delivery(run.id, "first", 1, None))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(count)
    assert sorted(counts) == [1, 2, 3, 4]
