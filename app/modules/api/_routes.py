"""The v1 routes: thin translations between HTTP and the ports.

Handlers receive the ports through one injected `Services` value, so the same routes
serve the real engine and test fakes alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    Parameter,
    QueryParameter,
)

from treadle.config import ApiSettings, LimitsSettings
from treadle.domain.limits import KEY_CHARS, MAX_VERSION, NAME_CHARS
from treadle.domain.state import RunState, RunStatus, TaskStatus
from treadle.domain.tags import MAX_TAGS, check_tags, parse_tag_filter
from treadle.modules.api._bounds import check_text, known_query_only
from treadle.modules.api._errors import (
    PROBLEM_MEDIA_TYPE,
    InvalidParameter,
    UnsupportedMediaType,
)
from treadle.modules.api._schemas import (
    CancelRunRequest,
    HistoryPage,
    MapItemPage,
    Problem,
    RunBody,
    RunCountsBody,
    RunPage,
    StartRunRequest,
    WorkflowDetail,
    WorkflowPage,
    WorkflowRef,
    WorkflowVersion,
    map_item_body,
    run_body,
    run_summary,
    workflow_detail,
    workflow_ref,
    workflow_summary,
    workflow_version,
)
from treadle.modules.api._values import (
    INLINE_ALL,
    elide_items,
    elide_run,
    inline_bound,
    parse_value_path,
    read_value,
    run_reader,
)
from treadle.modules.api._waiting import MAX_WAIT_SECONDS, run_when_ended
from treadle.modules.api._waits import waits_of
from treadle.observability import Telemetry, current_traceparent
from treadle.ports import (
    HealthCheck,
    RunControl,
    RunEnds,
    RunFilter,
    RunStore,
    ScheduleControl,
    WorkerRegistry,
    WorkflowStore,
)
from treadle.testing.crash import crash_point

_STATUSES = ", ".join(s.value for s in RunStatus)


@dataclass(frozen=True)
class Services:
    """The ports and settings the routes use; injected into handlers as `services`."""

    run_control: RunControl
    workflows: WorkflowStore
    runs: RunStore
    health: Sequence[HealthCheck]
    settings: ApiSettings
    telemetry: Telemetry = field(default_factory=Telemetry.off)
    schedules: ScheduleControl | None = None
    run_ends: RunEnds | None = None
    """Announces run ends decided in this process (None: no orchestrator here)."""
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    workers: WorkerRegistry | None = None
    """Where workers report themselves (None: this server does not show them)."""
    worker_report_seconds: float = 5.0
    """`worker.report_interval_seconds`: how often a live worker reports."""
    queue_names: dict[tuple[str, int], dict[str, str]] = field(default_factory=dict)
    """Each workflow version's task queues, read once (see `_workers`)."""

    def value_bound(self, inline: str | None) -> int | None:
        """How large a value an answer inlines (None: any, for `?inline=all`)."""
        return inline_bound(self.limits.max_inline_value_bytes, inline)

    def run_answer(self, run: RunState) -> RunBody:
        """The run's body, with the values over the configured bound elided."""
        return elide_run(run_body(run), self.limits.max_inline_value_bytes)

    def page_size(self, limit: int | None) -> int:
        """The page size to ask the store for; raises `InvalidParameter` when out of range."""
        if limit is None:
            return min(self.settings.default_page_size, self.settings.max_page_size)
        top = self.settings.max_page_size
        if not 1 <= limit <= top:
            raise InvalidParameter("limit", f"must be between 1 and {top}, got {limit}")
        return limit


ServicesDep = NamedDependency[Services]
"""How a handler asks for the injected `Services`."""


def require_json_body(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard: a request that carries a body must say it is JSON.

    Litestar would decode any body as JSON whatever its content type; refusing others
    turns a client's mistake (a form post, text/plain) into a clear 415.
    """
    has_body = connection.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in connection.headers
    )
    if not has_body:
        return
    media_type = connection.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json" or media_type.endswith("+json"):
        return
    raise UnsupportedMediaType(media_type)


def _problems(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json answers a route can give.

    400 is always one: any /v1 route refuses a NUL in its path, query or headers and an
    unknown query parameter (`_bounds`), and litestar's default 400 entry would describe
    a JSON body this API never sends.
    """
    return {
        code: ResponseSpec(
            data_container=Problem,
            media_type=PROBLEM_MEDIA_TYPE,
            description="An RFC 9457 problem",
            generate_examples=False,
        )
        for code in sorted({400, *codes})
    }


Limit = Annotated[
    int | None, QueryParameter(description="Page size, 1 to the server's max_page_size.")
]
Cursor = Annotated[
    str | None,
    QueryParameter(description="`next_cursor` from the previous page; omit for the first."),
]
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", description="Start at most one run per key."),
]
VersionNumber = Annotated[
    int, Parameter(ge=1, le=MAX_VERSION, description="A version number, from 1.")
]
WaitSeconds = Annotated[
    float | None,
    QueryParameter(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=f"Long poll: wait up to this many seconds (at most {MAX_WAIT_SECONDS:g}) "
        "for the run to end before answering.",
    ),
]
Inline = Annotated[
    str | None,
    QueryParameter(
        description=f"`{INLINE_ALL}`: every input and output inline, however large (by "
        "default one over `limits.max_inline_value_bytes` is "
        '`{"$elided": {"bytes": N, "href": "/v1/runs/{id}/values/..."}}`).',
        schema_extra={"enum": [INLINE_ALL]},
    ),
]
StatusFilter = Annotated[str | None, QueryParameter(description=f"One of: {_STATUSES}.")]
_ITEM_STATUSES = ", ".join(s.value for s in TaskStatus)
ItemStatusFilter = Annotated[
    str | None,
    QueryParameter(description=f"Only the items in this status, one of: {_ITEM_STATUSES}."),
]
FromIndex = Annotated[
    int | None,
    QueryParameter(
        description="Start the page at this item index (a deep link to one item).", ge=0
    ),
]
KeyFilter = Annotated[
    str | None, QueryParameter(description="Only the run started with this Idempotency-Key.")
]
TagFilter = Annotated[
    list[str] | None,
    QueryParameter(
        description="`key:value`: only runs with this tag; repeat it for runs with all of them."
    ),
]


def tag_filters(given: list[str]) -> dict[str, str]:
    """The `tag` query parameters as one mapping; 400 naming `tag` for a malformed one."""
    if len(given) > MAX_TAGS:
        raise InvalidParameter("tag", f"at most {MAX_TAGS} tag filters are allowed")
    wanted: dict[str, str] = {}
    for text in given:
        parsed = parse_tag_filter(text)
        if isinstance(parsed, str):
            raise InvalidParameter("tag", parsed)
        key, value = parsed
        if wanted.get(key, value) != value:  # no run has two values for one key
            raise InvalidParameter("tag", f"{key!r} is asked with two values")
        wanted[key] = value
    return wanted


# Taken as text and parsed by `parse_timestamp`, so a bad value gets a message that says
# what RFC 3339 wants (and a date-time without an offset is refused, not guessed).
CreatedAfter = Annotated[
    str | None,
    QueryParameter(description="RFC 3339 date-time: only runs created at or after it."),
]
CreatedBefore = Annotated[
    str | None,
    QueryParameter(description="RFC 3339 date-time: only runs created before it."),
]

COUNT_CAP = 10_000
"""The most runs `GET /v1/runs/counts` counts per status (bounded cost on big tables)."""


def parse_timestamp(name: str, value: str | None) -> datetime | None:
    """An RFC 3339 date-time with an offset; raises `InvalidParameter` for anything else."""
    if value is None:
        return None
    example = "e.g. 2025-01-31T12:00:00Z"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # A '+' left unencoded in a query string arrives as a space.
        hint = "; encode '+' as %2B" if " " in value else ""
        raise InvalidParameter(
            name, f"must be an RFC 3339 date-time ({example}){hint}; got {value!r}"
        ) from None
    if parsed.tzinfo is None:  # a date alone, or a local time: ambiguous
        raise InvalidParameter(
            name, f"must be an RFC 3339 date-time with an offset ({example}); got {value!r}"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before the first instant there is
        raise InvalidParameter(
            name, f"must be between years 1 and 9999 once taken to UTC; got {value!r}"
        ) from None


class WorkflowController(Controller):
    """Registering and reading workflow definitions."""

    path = "/v1/workflows"
    tags = ["workflows"]
    guards = [known_query_only]

    @post(
        "/",
        status_code=201,
        guards=[require_json_body],
        summary="Register a workflow definition",
        description="201 when a new version was created; 200 with the same body when the "
        "definition is identical to the latest version.",
        responses={
            200: ResponseSpec(
                data_container=WorkflowRef,
                description="The definition is identical to the latest version",
                generate_examples=False,
            ),
            **_problems(400, 413, 415, 422),
        },
    )
    async def register(
        self, services: ServicesDep, data: JSONBody[dict[str, Any]]
    ) -> Response[WorkflowRef]:
        stored, created = await services.run_control.register_workflow(data)
        return Response(workflow_ref(stored), status_code=201 if created else 200)

    @get("/", summary="List workflows (latest version of each)", responses=_problems(400))
    async def list_workflows(
        self, services: ServicesDep, limit: Limit = None, cursor: Cursor = None
    ) -> WorkflowPage:
        page = await services.workflows.list_workflows(services.page_size(limit), cursor)
        return WorkflowPage(
            items=[workflow_summary(w) for w in page.items], next_cursor=page.next_cursor
        )

    @get("/{name:str}", summary="The latest definition and its versions", responses=_problems(404))
    async def get_workflow(self, services: ServicesDep, name: FromPath[str]) -> WorkflowDetail:
        latest = await services.workflows.get_workflow(name)
        versions = await services.workflows.list_versions(
            name, services.settings.max_page_size, None
        )
        return workflow_detail(latest, versions.items)

    @get(
        "/{name:str}/versions/{version:int}",
        summary="One version of a definition",
        responses=_problems(400, 404),
    )
    async def get_version(
        self, services: ServicesDep, name: FromPath[str], version: VersionNumber
    ) -> WorkflowVersion:
        return workflow_version(await services.workflows.get_workflow(name, version))


class RunController(Controller):
    """Starting, reading and steering runs."""

    path = "/v1/runs"
    tags = ["runs"]
    guards = [known_query_only]

    @post(
        "/",
        status_code=201,
        guards=[require_json_body],
        summary="Start a run",
        description="201 with the new run; 200 with the existing run when the "
        "Idempotency-Key was used before for the same request; 409 naming that run when "
        "it was used for another workflow, version or input.",
        responses={
            200: ResponseSpec(
                data_container=RunBody,
                description="The run started earlier with this Idempotency-Key",
                generate_examples=False,
            ),
            **_problems(400, 404, 409, 413, 415, 422),
        },
    )
    async def start(
        self,
        services: ServicesDep,
        data: JSONBody[StartRunRequest],
        idempotency_key: IdempotencyKey = None,
    ) -> Response[RunBody]:
        if idempotency_key is not None and not idempotency_key.strip():
            raise InvalidParameter("Idempotency-Key", "must not be empty")
        check_text("Idempotency-Key", idempotency_key, KEY_CHARS)
        check_text("workflow", data.workflow, NAME_CHARS)
        run, created = await services.run_control.start_run(
            data.workflow,
            data.version,
            data.input,
            idempotency_key=idempotency_key,
            tags=check_tags(data.tags or {}),
            # The request's span: the run's first decision, and so the whole run, joins it.
            traceparent=current_traceparent(),
        )
        crash_point("after_create_before_response")
        return Response(services.run_answer(run), status_code=201 if created else 200)

    @get("/", summary="List runs, newest first", responses=_problems(400))
    async def list_runs(
        self,
        *,  # litestar passes keywords; one parameter per documented filter
        services: ServicesDep,
        workflow: FromQuery[str | None] = None,
        status: StatusFilter = None,
        idempotency_key: KeyFilter = None,
        created_after: CreatedAfter = None,
        created_before: CreatedBefore = None,
        tag: TagFilter = None,
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> RunPage:
        if status is not None and status not in RunStatus.__members__.values():
            raise InvalidParameter("status", f"must be one of {_STATUSES}; got {status!r}")
        if idempotency_key is not None and not idempotency_key:
            raise InvalidParameter("idempotency_key", "must not be empty")
        where = RunFilter(
            workflow=workflow,
            status=status,
            idempotency_key=idempotency_key,
            created_after=parse_timestamp("created_after", created_after),
            created_before=parse_timestamp("created_before", created_before),
            tags=tag_filters(tag or []),
        )
        page = await services.runs.list_runs(where, limit=services.page_size(limit), cursor=cursor)
        return RunPage(items=[run_summary(r) for r in page.items], next_cursor=page.next_cursor)

    @get(
        "/counts",
        summary="How many runs have each status",
        description=f"Each status is counted up to {COUNT_CAP:,} runs so that a request "
        "never scans a large table; `capped` is true when some status has more, and its "
        "count then reads `cap`.",
        responses=_problems(400),
    )
    async def count_runs(
        self,
        services: ServicesDep,
        workflow: FromQuery[str | None] = None,
        created_after: CreatedAfter = None,
    ) -> RunCountsBody:
        counted = await services.runs.count_runs(
            workflow=workflow,
            created_after=parse_timestamp("created_after", created_after),
            cap=COUNT_CAP,
        )
        return RunCountsBody(counts=counted.counts, capped=counted.capped, cap=counted.cap)

    @get(
        "/{run_id:str}",
        summary="A run with its tasks",
        description="With `wait`, a long poll: the answer comes as soon as the run has "
        "ended (completed, failed, cancelled or timed out), or after `wait` seconds with "
        "the run as it is then. Each task's `waiting` says what it waits for: a signal, "
        "a sleep's end, a retry's backoff or the run's resume. An input or output over "
        '`limits.max_inline_value_bytes` as JSON reads `{"$elided": {"bytes": N, "href": '
        "...}}`: GET the href for the value, or pass `inline=all` for every value in full.",
        responses=_problems(400, 404),
    )
    async def get_run(
        self,
        services: ServicesDep,
        run_id: FromPath[str],
        wait: WaitSeconds = None,
        inline: Inline = None,
    ) -> RunBody:
        most = services.value_bound(inline)
        read = run_reader(services.runs, most)
        run = await (
            run_when_ended(read, services.run_ends, run_id, wait) if wait else read(run_id)
        )
        waits = await waits_of(run, services.runs, services.workflows)
        return elide_run(run_body(run, waits), most)

    @get(
        "/{run_id:str}/values/{value_path:path}",
        summary="One input, output or error of a run, a task or a map item, as JSON",
        description="The `href` of an elided value. Paths: `input`, `output`, `error`, "
        "`tasks/{task}/input`, `tasks/{task}/output`, `tasks/{task}/error`, and "
        "`tasks/{task}[{index}]/...` for a map item. An unknown path is a 400; an unknown "
        "run, task or item a 404; a value not set yet is `null`.",
        media_type="application/json",
        responses=_problems(400, 404),
    )
    async def value(
        self, services: ServicesDep, run_id: FromPath[str], value_path: FromPath[str]
    ) -> Response[Any]:
        raw = await read_value(services.runs, run_id, parse_value_path(value_path))
        return Response(raw, media_type="application/json")

    @get(
        "/{run_id:str}/tasks/{task_id:str}/items",
        summary="The items of a map task, by index",
        description="`status` keeps only the items in that status (the failed ones, say); "
        "`from_index` starts the page at an index, so one item is a single read "
        "(`from_index=i&limit=1`).",
        responses=_problems(400, 404),
    )
    async def map_items(
        self,
        *,  # litestar passes keywords
        services: ServicesDep,
        run_id: FromPath[str],
        task_id: FromPath[str],
        limit: Limit = None,
        cursor: Cursor = None,
        inline: Inline = None,
        status: ItemStatusFilter = None,
        from_index: FromIndex = None,
    ) -> MapItemPage:
        if status is not None and status not in TaskStatus.__members__.values():
            raise InvalidParameter("status", f"must be one of {_ITEM_STATUSES}; got {status!r}")
        most = services.value_bound(inline)
        size = services.page_size(limit)
        page = await services.runs.list_map_items(
            run_id, task_id, size, cursor, most_bytes=most, status=status, from_index=from_index
        )
        body = MapItemPage(
            items=[map_item_body(i) for i in page.items], next_cursor=page.next_cursor
        )
        return elide_items(run_id, task_id, body, most)

    @get(
        "/{run_id:str}/events",
        summary="A run's history, oldest first",
        responses=_problems(400, 404),
    )
    async def history(
        self,
        services: ServicesDep,
        run_id: FromPath[str],
        limit: Limit = None,
        cursor: Cursor = None,
    ) -> HistoryPage:
        page = await services.runs.list_history(run_id, services.page_size(limit), cursor)
        return HistoryPage(items=page.items, next_cursor=page.next_cursor)

    @post(
        "/{run_id:str}/cancel",
        status_code=202,
        guards=[require_json_body],
        summary="Request cancellation of a run",
        responses=_problems(400, 404, 409, 415),
    )
    async def cancel(
        self,
        services: ServicesDep,
        run_id: FromPath[str],
        data: JSONBody[CancelRunRequest | None] = None,
    ) -> RunBody:
        reason = data.reason if data is not None else ""
        return services.run_answer(await services.run_control.cancel_run(run_id, reason))

    @post(
        "/{run_id:str}/signals/{name:str}",
        status_code=202,
        guards=[require_json_body],
        summary="Send a signal (the body is its JSON payload)",
        responses=_problems(400, 404, 409, 413, 415, 422),
    )
    async def signal(
        self,
        services: ServicesDep,
        run_id: FromPath[str],
        name: FromPath[str],
        data: JSONBody[Any] = None,
    ) -> RunBody:
        check_text("name", name, NAME_CHARS)
        return services.run_answer(await services.run_control.signal_run(run_id, name, data))

    @post(
        "/{run_id:str}/retry",
        status_code=202,
        summary="Retry a failed run from the failed tasks",
        responses=_problems(404, 409),
    )
    async def retry(self, services: ServicesDep, run_id: FromPath[str]) -> RunBody:
        return services.run_answer(await services.run_control.retry_run(run_id))

    @post(
        "/{run_id:str}/pause",
        status_code=202,
        summary="Pause a run: in-flight tasks finish, nothing new starts until resumed",
        responses=_problems(404, 409),
    )
    async def pause(self, services: ServicesDep, run_id: FromPath[str]) -> RunBody:
        return services.run_answer(await services.run_control.pause_run(run_id))

    @post(
        "/{run_id:str}/resume",
        status_code=202,
        summary="Resume a paused run: start what became ready",
        responses=_problems(404, 409),
    )
    async def resume(self, services: ServicesDep, run_id: FromPath[str]) -> RunBody:
        return services.run_answer(await services.run_control.resume_run(run_id))
