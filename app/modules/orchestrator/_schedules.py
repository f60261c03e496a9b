"""Schedules: the control surface the API calls, and the loop that starts one run per tick.

Exactly one run per tick, with any number of orchestrators: a due schedule is leased by
one claimer (`claim_due_schedules`), and each run it starts carries the idempotency key
`schedule:<id>:<tick>`, unique in the store, so a claimer whose lease ran out mid-tick
finds the run already there instead of starting another.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

import anyio
import msgspec

from treadle.domain.errors import (
    RunNotActive,
    RunNotFound,
    TreadleError,
    ValidationIssue,
    WorkflowNotFound,
)
from treadle.domain.schedules import (
    Backfill,
    OverlapPolicy,
    Schedule,
    ScheduleInvalid,
    backfill_ticks,
    first_fire,
    parse_backfill,
    parse_schedule,
    patched_spec,
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
        *,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunState, bool]: ...

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState: ...


def tick_key(schedule_id: str, tick: datetime) -> str:
    """The idempotency key of the run for one tick of a schedule."""
    return f"schedule:{schedule_id}:{tick.isoformat()}"


def trigger_key(schedule_id: str, at: datetime) -> str:
    """The idempotency key of a run an operator triggered (`POST .../trigger`)."""
    return f"schedule:{schedule_id}:trigger:{at.isoformat()}"


class ScheduleService:
    """The `ScheduleControl` port: create, read, change, trigger, backfill, pause, resume
    and delete schedules; `runs` starts the runs an operator triggers."""

    def __init__(self, store: _Store, clock: Clock, *, runs: _Runs) -> None:
        self._store = store
        self._clock = clock
        self._runs = runs

    async def create_schedule(self, data: Any) -> Schedule:
        """Validate and store a schedule; raises `ScheduleInvalid`, `ScheduleExists`."""
        spec, trigger = parse_schedule(data)
        await self._check_workflow(spec.workflow, spec.version)
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
            tags=dict(spec.tags or {}),
        )
        return await self._store.create_schedule(schedule)

    async def update_schedule(self, schedule_id: str, patch: Any) -> Schedule:
        """Change a schedule in place; the next tick follows the new trigger (or `start_at`).

        Raises `ScheduleNotFound`, `ScheduleInvalid`.
        """
        found = await self._store.get_schedule(schedule_id)
        spec, trigger = parse_schedule(patched_spec(found, patch))
        await self._check_workflow(spec.workflow, spec.version)
        next_at = found.next_fire_at
        if trigger != found.trigger or spec.start_at is not None:
            next_at = first_fire(trigger, self._clock.now(), spec.start_at)
        changed = msgspec.structs.replace(
            found,
            workflow=spec.workflow,
            version=spec.version,
            input=spec.input,
            trigger=trigger,
            overlap=spec.overlap,
            catch_up=spec.catch_up,
            tags=dict(spec.tags or {}),
            next_fire_at=next_at,
        )
        return await self._store.update_schedule(changed)

    async def trigger_schedule(self, schedule_id: str) -> RunState:
        """Start one run now (whatever the overlap policy: an operator asked for it),
        recorded as the schedule's last run; the next tick stays where it was."""
        found = await self._store.get_schedule(schedule_id)
        now = self._clock.now()
        run, _ = await self._runs.start_run(
            found.workflow,
            found.version,
            found.input,
            idempotency_key=trigger_key(found.id, now),
            tags=found.tags,
        )
        await self._store.record_schedule_run(found.id, now, run.id)
        return run

    async def backfill_schedule(self, schedule_id: str, data: Any) -> Schedule:
        """Start a backfill of `{start, end, max_concurrent?}`, driven by the schedule loop.

        Raises `ScheduleNotFound`, `ScheduleInvalid`, `BackfillInProgress`.
        """
        found = await self._store.get_schedule(schedule_id)
        backfill = parse_backfill(data, found.trigger, self._clock.now())
        return await self._store.start_backfill(schedule_id, backfill)

    async def cancel_backfill(self, schedule_id: str) -> Schedule:
        """Stop the backfill in progress: no more runs start (those started stay)."""
        await self._store.advance_backfill(schedule_id, None)
        return await self._store.get_schedule(schedule_id)

    async def _check_workflow(self, workflow: str, version: int | None) -> None:
        try:
            await self._store.get_workflow(workflow, version)
        except WorkflowNotFound as exc:
            raise ScheduleInvalid([ValidationIssue(path="workflow", message=str(exc))]) from None

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
        if schedule.backfill is not None:
            await self._advance_backfill(schedule, schedule.backfill)
        await self._store.advance_schedule(
            schedule.id,
            next_fire_at=plan.next_fire_at,
            fired_at=fired,
            run_id=last_run if fired is not None else None,
        )

    async def _advance_backfill(self, schedule: Schedule, backfill: Backfill) -> None:
        """Start backfill runs while fewer than `max_concurrent` of its runs are active.

        The cursor is saved after the runs start: a crash in between starts them again
        with the same per-tick keys, which finds them instead of starting more.
        """
        active = [r for r in backfill.active if await self._still_active(r)]
        ticks, after = backfill_ticks(
            schedule.trigger, backfill, backfill.max_concurrent - len(active)
        )
        for tick in ticks:
            run_id = await self._start(schedule, tick)
            if run_id is not None:
                active.append(run_id)
        if after is None and not active:
            log.info("schedule backfill finished", schedule=schedule.name, runs=backfill.started)
            await self._store.advance_backfill(schedule.id, None)
            return
        moved = msgspec.structs.replace(
            backfill, next=after, active=active, started=backfill.started + len(ticks)
        )
        if moved != backfill:
            await self._store.advance_backfill(schedule.id, moved)

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
        return await self._start(schedule, tick)

    async def _start(self, schedule: Schedule, tick: datetime) -> str | None:
        """Start (or find) the run of one tick; None when it cannot start."""
        try:
            run, _ = await self._runs.start_run(
                schedule.workflow,
                schedule.version,
                schedule.input,
                idempotency_key=tick_key(schedule.id, tick),
                tags=schedule.tags,
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
