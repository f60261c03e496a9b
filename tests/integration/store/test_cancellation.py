"""A cancelled store call leaves neither a half-written decision nor a dirty pooled connection."""

from __future__ import annotations

import anyio
import asyncpg
import msgspec
import pytest

from tests.integration.store.factories import entry, make_run, unchanged
from tests.stores import apply, create_run
from treadle.domain.state import RunState
from treadle.ports import Changes
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


def _bump(state: RunState) -> Changes:
    return Changes(
        state=msgspec.structs.replace(state, input=state.input + 1), history=[entry("bump")]
    )


async def test_cancelled_apply_while_waiting_for_the_run_lock(pg_database: str) -> None:
    """An apply cancelled while blocked on the run lock writes nothing and the pool stays usable."""
    store = SqlStore(pg_database, pool_size=1)
    try:
        run = make_run(input=0)
        await create_run(store, run, unchanged)
        blocker = await asyncpg.connect(pg_database)
        try:
            async with blocker.transaction():
                await blocker.execute("SELECT 1 FROM treadle_runs WHERE id = $1 FOR UPDATE", run.id)
                for _ in range(3):
                    with anyio.move_on_after(0.2) as scope:
                        await apply(store, run.id, _bump)
                    assert scope.cancelled_caught
        finally:
            await blocker.close()
        # The only pooled connection was cancelled mid-statement three times; it must be
        # clean (or replaced) for this to work.
        await apply(store, run.id, _bump)
        loaded = await store.get_run(run.id)
        assert loaded.input == 1
        assert [h.type for h in (await store.list_history(run.id, 10, None)).items] == ["bump"]
    finally:
        await store.close()
