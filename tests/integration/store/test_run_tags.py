"""Run tags: kept with the run, read back, and found through the tags index."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.store.factories import at, make_run, unchanged
from tests.stores import apply, create_run
from treadle.domain.state import RunStatus
from treadle.ports import Changes, RunFilter
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio


def _tagged(run_id: str, i: int, **tags: str) -> object:
    return msgspec.structs.replace(make_run(run_id, created_at=at(i)), tags=tags)


async def _ids(store: SqlStore, where: RunFilter, limit: int = 10) -> list[str]:
    ids: list[str] = []
    cursor = None
    while True:
        page = await store.list_runs(where, limit=limit, cursor=cursor)
        ids += [r.id for r in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def test_tags_are_read_back_with_the_run_and_its_summary(store: SqlStore) -> None:
    """A run's tags come back from get_run and in its list entry, and survive decisions."""
    run = _tagged("r1", 0, customer="acme", tier="gold")
    await create_run(store, run, unchanged)  # type: ignore[arg-type]
    running = msgspec.structs.replace(run, status=RunStatus.RUNNING)  # type: ignore[type-var]
    await apply(store, "r1", lambda s: Changes(state=running))
    assert (await store.get_run("r1")).tags == {"customer": "acme", "tier": "gold"}
    (summary,) = (await store.list_runs(RunFilter(), limit=5, cursor=None)).items
    assert summary.tags == {"customer": "acme", "tier": "gold"}


async def test_tag_filters_and_together_and_page_newest_first(store: SqlStore) -> None:
    """Several tags must all match; pages by tag are newest first and cover each run once."""
    for i in range(6):
        tags = {"customer": "acme" if i % 2 == 0 else "zeta", "tier": "gold" if i < 4 else "free"}
        await create_run(store, _tagged(f"r{i}", i, **tags), unchanged)  # type: ignore[arg-type]
    await create_run(store, make_run("untagged", created_at=at(9)), unchanged)
    assert await _ids(store, RunFilter(tags={"customer": "acme"}), limit=2) == ["r4", "r2", "r0"]
    both = RunFilter(tags={"customer": "acme", "tier": "gold"})
    assert await _ids(store, both, limit=1) == ["r2", "r0"]
    assert await _ids(store, RunFilter(tags={"customer": "nobody"})) == []
    with_workflow = RunFilter(workflow="other", tags={"customer": "acme"})
    assert await _ids(store, with_workflow) == []
    assert len(await _ids(store, RunFilter())) == 7
