"""The schedule routes and bodies: create, list, read, pause, resume and delete."""

from __future__ import annotations

from typing import Any

from litestar import Controller, delete, get, post
from litestar.params import FromPath, JSONBody

from treadle.api_types import ScheduleBody, SchedulePage
from treadle.domain.schedules import Schedule
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
        "overlap: skip|allow|cancel_previous, catch_up: skip|run_once, start_at?, paused?}`; "
        "`interval` is a duration ('30s', '1h') or seconds.",
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
