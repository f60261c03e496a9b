"""Pruning the outbox: rows sent before the retention go, in batches; others stay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import pytest

from tests.integration.store.factories import at, make_run, message
from tests.stores import create_run
from treadle.ports import Changes
from treadle.store._sqlalchemy import SqlStore
from treadle.store.memory import MemoryStore

pytestmark = pytest.mark.anyio


class _Clock:
    """The store's clock, set by the test: it stamps `created_at` and `sent_at`."""

    def __init__(self) -> None:
        self.current = at(0)

    def __call__(self) -> datetime:
        return self.current


@pytest.fixture
def clock() -> _Clock:
    """A clock for the clocked store."""
    return _Clock()


@pytest.fixture
async def clocked(store: SqlStore, clock: _Clock) -> AsyncIterator[SqlStore]:
    """A store on the test's database whose writes take their time from `clock`."""
    if isinstance(store, MemoryStore):
        yield MemoryStore(data=store.data, clock=clock)
        return
    other = SqlStore(store.url, pool_size=4, clock=clock)
    try:
        yield other
    finally:
        await other.close()


async def _write(store: SqlStore, clock: _Clock, seconds: float, rows: int) -> list[int]:
    """Write `rows` outbox rows at `seconds` after T0; their ids."""
    clock.current = at(seconds)
    applied, _ = await create_run(
        store,
        make_run(),
        lambda s: Changes(state=s, outbox=[message(s.id, str(i)) for i in range(rows)]),
    )
    return [r.id for r in applied.outbox]


async def _mark(store: SqlStore, clock: _Clock, seconds: float, ids: list[int]) -> None:
    clock.current = at(seconds)
    await store.mark_sent(ids)


async def test_only_rows_sent_before_the_cutoff_are_pruned(
    clocked: SqlStore, clock: _Clock
) -> None:
    """Rows sent before the cutoff go; rows sent since, and unsent rows (old ones too), stay."""
    old = await _write(clocked, clock, 0, 3)
    await _mark(clocked, clock, 10, old[:2])
    recent = await _write(clocked, clock, 100, 2)
    await _mark(clocked, clock, 110, recent[:1])

    assert await clocked.prune_sent(at(50), 1000) == 2
    assert await clocked.prune_sent(at(50), 1000) == 0
    assert [r.id for r in await clocked.claim_unsent(at(10**6), 10)] == [old[2], recent[1]]
    assert await clocked.prune_sent(at(10**6), 1000) == 1  # the recent sent row was kept


async def test_pruning_walks_past_kept_rows_in_batches(clocked: SqlStore, clock: _Clock) -> None:
    """Many batches go in one call, past whole batches of old unsent rows at the front."""
    unsent = await _write(clocked, clock, 0, 5)
    sent = await _write(clocked, clock, 1, 7)
    await _mark(clocked, clock, 2, sent)
    newer = await _write(clocked, clock, 20, 3)
    await _mark(clocked, clock, 21, newer)

    assert await clocked.prune_sent(at(10), 2) == 7
    assert [r.id for r in await clocked.claim_unsent(at(10**6), 10)] == unsent
    assert await clocked.prune_sent(at(10**6), 2) == 3
    assert (await clocked.outbox_backlog())[0] == 5
