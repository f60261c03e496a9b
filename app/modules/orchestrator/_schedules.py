"""Schedules: the control surface the API calls, and the loop that starts one run per tick.

Exactly one run per tick, with any number of orchestrators: a due schedule is leased by
one claimer (`claim_due_schedules`), and each run it starts carries the idempotency key
`schedule:<id>:<tick>`, unique in the store, so a claimer whose lease ran out mid-tick
finds the run already there instead of starting another.
"""

from __future__ import annotations

import contextlib
import secrets
from datetime import datetime
from typing import Any, Protocol

import anyio

from treadle.domain.errors import (
    RunNotActive,
    RunNotFound,
    TreadleError,
    ValidationIssue,
    WorkflowNotFound,
)
from treadle.domain.schedules import (
    OverlapPolicy,
    Schedule,
    ScheduleInvalid,
    first_fire,
    parse_schedule,
    plan_ticks,
)
from treadle.domain.state import RunState
from treadle.observability import get_logger
from treadle.ports import Clock, Page, RunStore, ScheduleStore, WorkflowStore

log = get_logger(__name__)

POLL_SECONDS = 0.2
"""How often the loop looks for due schedules (an indexed query on `next_fire_at`)."""
LEASE_SECONDS = 30.0
CLAIM_BATCH = 50


class _Store(ScheduleStore, WorkflowStore, RunStore, Protocol):
    """What schedules need of the store."""


class _Runs(Protocol):
    """What the loop needs of the run service."""

    async def start_run(
        self,
        workflow: str,
        version: int | None,
        input: Any,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
    ) -> tuple[RunState, bool]: ...

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState: ...


def tick_key(schedule_id: str, tick: datetime) -> str:
    """The idempotency key of the run for one tick of a schedule."""
    return f"schedule:{schedule_id}:{tick.isoformat()}"


class ScheduleService:
    """The `ScheduleControl` port: create, read, pause, resume and delete schedules."""

    def __init__(self, store: _Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create_schedule(self, data: Any) -> Schedule:
        """Validate and store a schedule; raises `ScheduleInvalid`, `ScheduleExists`."""
        spec, trigger = parse_schedule(data)
        try:
            await self._store.get_workflow(spec.workflow, spec.version)
        except WorkflowNotFound as exc:
            raise ScheduleInvalid([ValidationIssue(path="workflow", message=str(exc))]) from None
        now = self._clock.now()
        schedule = Schedule(
            id=f"sch_{secrets.token_hex(8)}",
            name=spec.name,
            workflow=spec.workflow,
            version=spec.version,
            input=spec.input,
            trigger=trigger,
            overlap=spec.overlap,
            catch_up=spec.catch_up,
            paused=spec.paused,
            next_fire_at=first_fire(trigger, now, spec.start_at),
            created_at=now,
        )
        return await self._store.create_schedule(schedule)

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return await self._store.get_schedule(schedule_id)

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        return await self._store.list_schedules(limit, cursor)

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        found = await self._store.get_schedule(schedule_id)
        return await self._store.set_schedule_paused(schedule_id, True, found.next_fire_at)

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Ticks that passed while paused are not caught up: the next one is in the future."""
        found = await self._store.get_schedule(schedule_id)
        if not found.paused:
            return found
        next_at = first_fire(found.trigger, self._clock.now())
        return await self._store.set_schedule_paused(schedule_id, False, next_at)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._store.delete_schedule(schedule_id)


class ScheduleLoop:
    """Claims due schedules and starts their runs, applying the overlap and catch-up rules."""

    def __init__(
        self, store: _Store, runs: _Runs, clock: Clock, *, poll_seconds: float = POLL_SECONDS
    ) -> None:
        self._store = store
        self._runs = runs
        self._clock = clock
        self._poll = poll_seconds

    async def run(self) -> None:
        """Fire due schedules until cancelled; a failing round is logged and retried."""
        while True:
            try:
                handled = await self.fire_due()
            except Exception:
                log.exception("the schedule loop failed a round; trying again")
                handled = 0
            if handled < CLAIM_BATCH:
                await anyio.sleep(self._poll)

    async def fire_due(self) -> int:
        """Handle every schedule due now; how many were claimed."""
        now = self._clock.now()
        due = await self._store.claim_due_schedules(now, CLAIM_BATCH, LEASE_SECONDS)
        for schedule in due:
            await self._handle(schedule, now)
        return len(due)

    async def _handle(self, schedule: Schedule, now: datetime) -> None:
        plan = plan_ticks(schedule.trigger, schedule.next_fire_at, now, schedule.catch_up)
        if plan.missed:
            log.warning(
                "schedule missed ticks",
                schedule=schedule.name,
                missed=plan.missed,
                catch_up=schedule.catch_up.value,
            )
        last_run, fired = schedule.last_run_id, None
        for tick in plan.ticks:
            started = await self._tick(schedule, tick, last_run)
            if started is not None:
                last_run, fired = started, tick
        await self._store.advance_schedule(
            schedule.id,
            next_fire_at=plan.next_fire_at,
            fired_at=fired,
            run_id=last_run if fired is not None else None,
        )

    async def _tick(self, schedule: Schedule, tick: datetime, last_run: str | None) -> str | None:
        """Start the run of one tick; its id, or None when the overlap policy skipped it."""
        overlapping = last_run is not None and schedule.overlap is not OverlapPolicy.ALLOW
        if overlapping and last_run is not None and await self._still_active(last_run):
            if schedule.overlap is OverlapPolicy.SKIP:
                log.info(
                    "schedule skipped a tick: its last run is active",
                    schedule=schedule.name,
                    run_id=last_run,
                )
                return None
            await self._cancel(schedule, last_run)
        try:
            run, _ = await self._runs.start_run(
                schedule.workflow,
                schedule.version,
                schedule.input,
                idempotency_key=tick_key(schedule.id, tick),
            )
        except TreadleError as exc:
            # The workflow was removed or its input no longer fits: the tick is lost, not
            # the loop; the schedule stays and tries again next tick.
            log.warning("schedule could not start a run", schedule=schedule.name, error=str(exc))
            return None
        return run.id

    async def _still_active(self, run_id: str) -> bool:
        try:
            run = await self._store.get_run(run_id)
        except RunNotFound:
            return False
        return not run.status.is_terminal

    async def _cancel(self, schedule: Schedule, run_id: str) -> None:
        # It may have finished on its own meanwhile.
        with contextlib.suppress(RunNotActive, RunNotFound):
            await self._runs.cancel_run(run_id, f"schedule {schedule.name}: the next tick is due")
