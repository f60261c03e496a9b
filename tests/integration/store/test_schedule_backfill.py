"""Schedule operations in the store and the loop: PATCH, trigger records, and a backfill
advanced by the schedule loop, bounded and resumable by another orchestrator."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from tests.integration.store.factories import make_run, unchanged
from tests.stores import apply, create_run
from treadle.domain.schedules import (
    Backfill,
    BackfillInProgress,
    Schedule,
    ScheduleNotFound,
    Trigger,
    parse_backfill,
)
from treadle.domain.state import RunStatus
from treadle.modules.orchestrator._schedules import ScheduleLoop, tick_key
from treadle.ports import Changes, RunFilter
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


class FakeClock:
    def now(self) -> datetime:
        return NOW


class StoreRuns:
    """Starts real (running) runs in the store, one per idempotency key, as the engine does."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.by_key: dict[str, str] = {}

    async def start_run(
        self,
        workflow: str,
        version: int | None,
        input: Any,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[Any, bool]:
        assert idempotency_key is not None
        if idempotency_key in self.by_key:
            return await self.store.get_run(self.by_key[idempotency_key]), False
        run = msgspec.structs.replace(
            make_run(f"run-{len(self.by_key)}", status=RunStatus.RUNNING), tags=dict(tags or {})
        )
        await create_run(self.store, run, unchanged)
        self.by_key[idempotency_key] = run.id
        return run, True

    async def cancel_run(self, run_id: str, reason: str = "") -> Any:
        raise AssertionError("a backfill cancels nothing")

    async def finish(self, run_id: str) -> None:
        run = await self.store.get_run(run_id)
        done = msgspec.structs.replace(run, status=RunStatus.COMPLETED, finished_at=NOW)
        await apply(self.store, run_id, lambda s: Changes(state=done))


def _schedule(**fields: Any) -> Schedule:
    values: dict[str, Any] = {
        "id": "s-every4",
        "name": "every4",
        "workflow": "wf",
        "trigger": Trigger(interval_seconds=4),
        "next_fire_at": NOW + timedelta(days=1),  # no regular tick during the test
        "created_at": T0,
        "tags": {"source": "schedule"},
        **fields,
    }
    return Schedule(**values)


def _backfill(start: float, end: float, most: int) -> Backfill:
    window = {
        "start": (T0 + timedelta(seconds=start)).isoformat(),
        "end": (T0 + timedelta(seconds=end)).isoformat(),
        "max_concurrent": most,
    }
    return parse_backfill(window, Trigger(interval_seconds=4), NOW)


async def test_a_backfill_runs_each_tick_once_at_most_n_at_a_time_across_loops(
    store: SqlStore,
) -> None:
    """Ticks 0..16 s, two at a time: two start, the next waits for one to end, a second
    loop (another orchestrator, or a restart) carries on from the stored cursor, and the
    backfill ends once every run it started has ended."""
    await store.create_schedule(_schedule())
    await store.start_backfill("s-every4", _backfill(0, 20, 2))
    with pytest.raises(BackfillInProgress):
        await store.start_backfill("s-every4", _backfill(0, 20, 2))
    runs = StoreRuns(store)
    loop = ScheduleLoop(store, runs, FakeClock())  # type: ignore[arg-type]
    await loop.fire_due()
    await loop.fire_due()
    assert list(runs.by_key) == [tick_key("s-every4", T0 + timedelta(seconds=s)) for s in (0, 4)]
    await runs.finish("run-0")
    other = ScheduleLoop(store, runs, FakeClock())  # type: ignore[arg-type]
    await other.fire_due()
    assert len(runs.by_key) == 3
    stored = (await store.get_schedule("s-every4")).backfill
    assert stored is not None
    assert (stored.next, stored.active, stored.started) == (
        T0 + timedelta(seconds=12),
        ["run-1", "run-2"],
        3,
    )
    for _ in range(6):
        for run_id in list(runs.by_key.values()):
            if (await store.get_run(run_id)).status is RunStatus.RUNNING:
                await runs.finish(run_id)
        await other.fire_due()
    expected = [tick_key("s-every4", T0 + timedelta(seconds=s)) for s in (0, 4, 8, 12, 16)]
    assert list(runs.by_key) == expected
    assert (await store.get_schedule("s-every4")).backfill is None
    tagged = await store.list_runs(RunFilter(tags={"source": "schedule"}), limit=10, cursor=None)
    assert len(tagged.items) == 5


async def test_update_rewrites_the_spec_but_not_where_the_schedule_stands(
    store: SqlStore,
) -> None:
    """update_schedule changes trigger, input and tags; last run and pause stay."""
    original = _schedule(paused=True, last_run_id="r-old", last_fire_at=T0)
    await store.create_schedule(original)
    changed = msgspec.structs.replace(
        original,
        trigger=Trigger(cron="@daily", timezone="Europe/Berlin"),
        input={"n": 2},
        tags={"customer": "acme"},
        next_fire_at=NOW,
        paused=False,
        last_run_id=None,
    )
    stored = await store.update_schedule(changed)
    assert stored.trigger == Trigger(cron="@daily", timezone="Europe/Berlin")
    assert (stored.input, stored.tags, stored.next_fire_at) == ({"n": 2}, {"customer": "acme"}, NOW)
    assert (stored.paused, stored.last_run_id) == (True, "r-old")
    await store.record_schedule_run("s-every4", NOW, "r-new")
    after = await store.get_schedule("s-every4")
    assert (after.last_run_id, after.last_fire_at, after.next_fire_at) == ("r-new", NOW, NOW)
    with pytest.raises(ScheduleNotFound):
        await store.update_schedule(msgspec.structs.replace(changed, id="nope"))
    with pytest.raises(ScheduleNotFound):
        await store.record_schedule_run("nope", NOW, "r")
    with pytest.raises(ScheduleNotFound):
        await store.start_backfill("nope", _backfill(0, 8, 1))


async def test_a_stopped_backfill_is_not_brought_back_by_a_loop_that_held_it(
    store: SqlStore,
) -> None:
    """The loop's cursor write after an operator stopped the backfill leaves it stopped."""
    await store.create_schedule(_schedule())
    await store.start_backfill("s-every4", _backfill(0, 20, 2))
    held = (await store.get_schedule("s-every4")).backfill
    assert held is not None
    await store.advance_backfill("s-every4", None)  # the operator's stop
    await store.advance_backfill("s-every4", msgspec.structs.replace(held, started=2))
    assert (await store.get_schedule("s-every4")).backfill is None
