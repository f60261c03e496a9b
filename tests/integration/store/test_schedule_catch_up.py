"""The schedule loop over a real store and a fake clock: after an outage `catch_up: skip`
starts no run for missed ticks, and `run_once` starts exactly one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from treadle.domain.schedules import CatchUpPolicy, OverlapPolicy, Schedule, Trigger
from treadle.modules.orchestrator._schedules import ScheduleLoop, tick_key
from treadle.store._sqlalchemy import SqlStore

pytestmark = pytest.mark.anyio

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test sets by hand."""

    def __init__(self) -> None:
        self.at = T0

    def now(self) -> datetime:
        return self.at


class _Run:
    def __init__(self, run_id: str) -> None:
        self.id = run_id


class RecordingRuns:
    """The run engine: records each start's idempotency key (one per tick)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

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
        self.keys.append(idempotency_key)
        return _Run(f"run-{len(self.keys)}"), True

    async def cancel_run(self, run_id: str, reason: str = "") -> Any:
        raise AssertionError("overlap is allow: nothing is cancelled")


async def _loop(store: SqlStore, catch_up: CatchUpPolicy) -> tuple[ScheduleLoop, RecordingRuns, FakeClock]:  # fmt: skip  # noqa: E501
    schedule = Schedule(
        id="s-every4",
        name="every4",
        workflow="w",
        trigger=Trigger(interval_seconds=4),
        overlap=OverlapPolicy.ALLOW,
        catch_up=catch_up,
        next_fire_at=T0,
        created_at=T0,
    )
    await store.create_schedule(schedule)
    runs, clock = RecordingRuns(), FakeClock()
    return ScheduleLoop(store, runs, clock), runs, clock  # type: ignore[arg-type]


async def _poll(loop: ScheduleLoop, clock: FakeClock, start: float, end: float) -> None:
    """Poll every 0.2 s from `start` to `end` seconds after T0, as the loop does."""
    at = start
    while at <= end + 1e-9:
        clock.at = T0 + timedelta(seconds=at)
        await loop.fire_due()
        at += 0.2


def _key(seconds: float) -> str:
    return tick_key("s-every4", T0 + timedelta(seconds=seconds))


async def test_skip_starts_no_run_for_ticks_missed_in_a_77_second_outage(
    sqlite_store: SqlStore,
) -> None:
    """Every 4 s, then 77 s without an orchestrator: on its return nothing starts for the
    missed ticks, and the rhythm resumes at the next future tick."""
    loop, runs, clock = await _loop(sqlite_store, CatchUpPolicy.SKIP)
    await _poll(loop, clock, 0.1, 12.1)
    assert runs.keys == [_key(0), _key(4), _key(8), _key(12)]
    # Down from 12.1 s to 89.5 s (77.4 s); the last tick, at 88 s, is 1.5 s late: on time.
    await _poll(loop, clock, 89.5, 89.9)
    assert runs.keys[4:] == [_key(88)]
    assert (await sqlite_store.get_schedule("s-every4")).next_fire_at == T0 + timedelta(seconds=92)


async def test_skip_after_an_outage_waits_for_the_next_tick_when_the_last_is_late(
    sqlite_store: SqlStore,
) -> None:
    """Back 2.5 s after the last tick (past its 2 s grace): no run until the next tick."""
    loop, runs, clock = await _loop(sqlite_store, CatchUpPolicy.SKIP)
    await _poll(loop, clock, 0.1, 0.1)
    await _poll(loop, clock, 78.5, 79.9)
    assert runs.keys == [_key(0)]
    await _poll(loop, clock, 80.1, 80.3)
    assert runs.keys == [_key(0), _key(80)]


async def test_run_once_starts_exactly_one_run_after_an_outage(sqlite_store: SqlStore) -> None:
    """`run_once` after 77 s down starts one run, for the latest missed tick, then none
    until the next tick."""
    loop, runs, clock = await _loop(sqlite_store, CatchUpPolicy.RUN_ONCE)
    await _poll(loop, clock, 0.1, 0.1)
    await _poll(loop, clock, 78.5, 79.9)
    assert runs.keys == [_key(0), _key(76)]
    await _poll(loop, clock, 80.1, 80.3)
    assert runs.keys == [_key(0), _key(76), _key(80)]
