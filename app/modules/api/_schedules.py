"""The schedule routes and bodies: create, list, read, pause, resume and delete."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody

from treadle.api_types import BackfillBody, RunBody, ScheduleBody, SchedulePage
from treadle.domain.schedules import Backfill, Schedule
from treadle.modules.api._bounds import known_query_only
from treadle.modules.api._errors import SchedulesUnavailable
from treadle.modules.api._routes import (
    Cursor,
    Limit,
    Services,
    ServicesDep,
    _problems,
    require_json_body,
)
from treadle.ports import ScheduleControl


def schedule_body(s: Schedule) -> ScheduleBody:
    return ScheduleBody(
        id=s.id,
        name=s.name,
        workflow=s.workflow,
        version=s.version,
        input=s.input,
        cron=s.trigger.cron,
        timezone=s.trigger.timezone,
        interval_seconds=s.trigger.interval_seconds,
        overlap=s.overlap.value,
        catch_up=s.catch_up.value,
        paused=s.paused,
        next_fire_at=s.next_fire_at,
        last_fire_at=s.last_fire_at,
        last_run_id=s.last_run_id,
        created_at=s.created_at,
        tags=s.tags,
        backfill=_backfill_body(s.backfill) if s.backfill is not None else None,
    )


def _backfill_body(b: Backfill) -> BackfillBody:
    return BackfillBody(
        start=b.start,
        end=b.end,
        max_concurrent=b.max_concurrent,
        next=b.next,
        active=b.active,
        started=b.started,
    )


def _control(services: Services) -> ScheduleControl:
    """The schedule service; an embedding built without one answers 404, not 500."""
    if services.schedules is None:
        raise SchedulesUnavailable
    return services.schedules


class ScheduleController(Controller):
    """Schedules that start runs of a workflow on a cron expression or a fixed interval."""

    path = "/v1/schedules"
    tags = ["schedules"]
    guards = [known_query_only]

    @post(
        "/",
        status_code=201,
        guards=[require_json_body],
        summary="Create a schedule",
        description="`{name, workflow, version?, input?, cron + timezone | interval, "
        "overlap: skip|allow|cancel_previous, catch_up: skip|run_once, start_at?, paused?, "
        "tags?}`; `interval` is a duration ('30s', '1h') or seconds; `cron` is 5 fields or "
        "@hourly, @daily, @weekly, @monthly, @yearly.",
        responses=_problems(400, 404, 409, 415, 422),
    )
    async def create(self, services: ServicesDep, data: JSONBody[dict[str, Any]]) -> ScheduleBody:
        return schedule_body(await _control(services).create_schedule(data))

    @get("/", summary="List schedules by name", responses=_problems(400))
    async def list_schedules(
        self, services: ServicesDep, limit: Limit = None, cursor: Cursor = None
    ) -> SchedulePage:
        page = await _control(services).list_schedules(services.page_size(limit), cursor)
        return SchedulePage(
            items=[schedule_body(s) for s in page.items], next_cursor=page.next_cursor
        )

    @get("/{schedule_id:str}", summary="A schedule", responses=_problems(404))
    async def get_schedule(self, services: ServicesDep, schedule_id: FromPath[str]) -> ScheduleBody:
        return schedule_body(await _control(services).get_schedule(schedule_id))

    @post(
        "/{schedule_id:str}/pause",
        status_code=200,
        summary="Stop firing until resumed",
        responses=_problems(404),
    )
    async def pause(self, services: ServicesDep, schedule_id: FromPath[str]) -> ScheduleBody:
        return schedule_body(await _control(services).pause_schedule(schedule_id))

    @post(
        "/{schedule_id:str}/resume",
        status_code=200,
        summary="Fire again from the next future tick",
        responses=_problems(404),
    )
    async def resume(self, services: ServicesDep, schedule_id: FromPath[str]) -> ScheduleBody:
        return schedule_body(await _control(services).resume_schedule(schedule_id))

    @delete(
        "/{schedule_id:str}",
        status_code=204,
        summary="Delete a schedule (its runs stay)",
        responses=_problems(404),
    )
    async def remove(self, services: ServicesDep, schedule_id: FromPath[str]) -> None:
        # `-> None`, not `Response[None]`: the document then says a 204 has no body.
        await _control(services).delete_schedule(schedule_id)

    @patch(
        "/{schedule_id:str}",
        guards=[require_json_body],
        summary="Change a schedule in place",
        description="Any of `workflow, version, input, cron, timezone, interval, overlap, "
        "catch_up, start_at, tags`; the next tick follows the new trigger. `cron` replaces an "
        "interval and `interval` a cron.",
        responses=_problems(400, 404, 415, 422),
    )
    async def update(
        self, services: ServicesDep, schedule_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> ScheduleBody:
        return schedule_body(await _control(services).update_schedule(schedule_id, data))

    @post(
        "/{schedule_id:str}/trigger",
        status_code=201,
        summary="Start one run now",
        description="Whatever the overlap policy; recorded as the schedule's last run, and "
        "the next tick stays where it was.",
        responses=_problems(404, 422),
    )
    async def trigger(self, services: ServicesDep, schedule_id: FromPath[str]) -> RunBody:
        return services.run_answer(await _control(services).trigger_schedule(schedule_id))

    @post(
        "/{schedule_id:str}/backfill",
        status_code=202,
        guards=[require_json_body],
        summary="Start a run per tick of a past time range",
        description="`{start, end, max_concurrent?}`: one run per tick in [start, end), at "
        "most `max_concurrent` (default 1) running at once; tracked on the schedule "
        "(`backfill`) and resumed after a restart. 409 while one is in progress.",
        responses=_problems(400, 404, 409, 415, 422),
    )
    async def backfill(
        self, services: ServicesDep, schedule_id: FromPath[str], data: JSONBody[dict[str, Any]]
    ) -> ScheduleBody:
        return schedule_body(await _control(services).backfill_schedule(schedule_id, data))

    @delete(
        "/{schedule_id:str}/backfill",
        status_code=200,
        summary="Stop the backfill in progress (its runs stay)",
        responses=_problems(404),
    )
    async def cancel_backfill(
        self, services: ServicesDep, schedule_id: FromPath[str]
    ) -> ScheduleBody:
        return schedule_body(await _control(services).cancel_backfill(schedule_id))
