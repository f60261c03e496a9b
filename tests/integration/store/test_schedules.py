"""Schedules in the store: create, list, pause, delete, and claiming due ones once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from treadle.domain.errors import InvalidCursor
from treadle.domain.schedules import (
    CatchUpPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleExists,
    ScheduleNotFound,
    Trigger,
)
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _schedule(name: str, *, due: datetime = NOW, **fields: object) -> Schedule:
    values: dict[str, object] = {
        "id": f"s-{name}",
        "name": name,
        "workflow": "w",
        "input": {"n": 1},
        "trigger": Trigger(interval_seconds=1.5),
        "next_fire_at": due,
        "created_at": NOW,
        **fields,
    }
    return Schedule(**values)  # type: ignore[arg-type]


async def test_create_get_and_list_by_name(store: SqlStore) -> None:
    """A schedule reads back as written, and lists page by name."""
    cron = _schedule(
        "b",
        trigger=Trigger(cron="0 9 * * *", timezone="Europe/Berlin"),
        overlap=OverlapPolicy.CANCEL_PREVIOUS,
        catch_up=CatchUpPolicy.RUN_ONCE,
        version=3,
    )
    await store.create_schedule(cron)
    await store.create_schedule(_schedule("a"))
    await store.create_schedule(_schedule("c"))
    assert await store.get_schedule("s-b") == cron
    first = await store.list_schedules(2, None)
    assert [s.name for s in first.items] == ["a", "b"]
    assert first.next_cursor is not None
    rest = await store.list_schedules(2, first.next_cursor)
    assert [s.name for s in rest.items] == ["c"]
    assert rest.next_cursor is None
    with pytest.raises(InvalidCursor):
        await store.list_schedules(2, "nonsense")


async def test_names_are_unique_and_missing_ids_are_not_found(store: SqlStore) -> None:
    """A second schedule with a taken name is refused; unknown ids raise ScheduleNotFound."""
    await store.create_schedule(_schedule("a"))
    with pytest.raises(ScheduleExists):
        await store.create_schedule(_schedule("a", id="other"))
    with pytest.raises(ScheduleNotFound):
        await store.get_schedule("nope")
    with pytest.raises(ScheduleNotFound):
        await store.delete_schedule("nope")
    with pytest.raises(ScheduleNotFound):
        await store.set_schedule_paused("nope", True, NOW)


async def test_claim_leases_due_schedules_until_advanced(store: SqlStore) -> None:
    """A due schedule is claimed once per lease; paused and future ones are not claimed."""
    await store.create_schedule(_schedule("due"))
    await store.create_schedule(_schedule("later", due=NOW + timedelta(minutes=1)))
    await store.create_schedule(_schedule("off", paused=True))
    claimed = await store.claim_due_schedules(NOW, 10, 30)
    assert [s.name for s in claimed] == ["due"]
    assert await store.claim_due_schedules(NOW, 10, 30) == []
    await store.advance_schedule(
        "s-due", next_fire_at=NOW + timedelta(seconds=1), fired_at=NOW, run_id="r1"
    )
    after = await store.get_schedule("s-due")
    assert after.last_run_id == "r1"
    assert after.last_fire_at == NOW
    assert await store.claim_due_schedules(NOW + timedelta(seconds=1), 10, 30) != []


async def test_pause_resume_and_delete(store: SqlStore) -> None:
    """Pausing hides a schedule from claims; resuming sets its next fire time; delete removes."""
    await store.create_schedule(_schedule("a"))
    paused = await store.set_schedule_paused("s-a", True, NOW)
    assert paused.paused
    assert await store.claim_due_schedules(NOW, 10, 30) == []
    resumed = await store.set_schedule_paused("s-a", False, NOW + timedelta(seconds=5))
    assert resumed.next_fire_at == NOW + timedelta(seconds=5)
    await store.delete_schedule("s-a")
    with pytest.raises(ScheduleNotFound):
        await store.get_schedule("s-a")


async def test_two_concurrent_claimers_get_a_due_schedule_once(
    store: SqlStore, twin: SqlStore
) -> None:
    """Two orchestrators claiming at once: exactly one of them gets each due schedule."""
    for i in range(5):
        await store.create_schedule(_schedule(f"s{i}"))
    results: list[list[Schedule]] = []

    async def claim(on: SqlStore) -> None:
        results.append(await on.claim_due_schedules(NOW, 10, 30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim, store)
        tg.start_soon(claim, twin)
    names = sorted(s.name for batch in results for s in batch)
    assert names == [f"s{i}" for i in range(5)]
