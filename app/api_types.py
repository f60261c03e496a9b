"""The HTTP API's bodies as msgspec Structs: the one light module the server and the client share.

The server (`treadle.modules.api`) answers these and litestar renders them into the OpenAPI
document; the typed client (`treadle.client`) and the CLI decode into them. So this module
imports only msgspec, the standard library and light domain records, never litestar,
the store or telemetry: a client must not load the server.

They are separate from the domain and store records on purpose: the JSON a user sees
is a contract (DESIGN.md "Interfaces users touch") and must not change when an
internal record grows a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import unquote

import msgspec

from treadle.domain.errors import ValidationIssue
from treadle.domain.events import HistoryEntry
from treadle.domain.state import ErrorInfo

__all__ = [
    "DEFAULT_URL",
    "ELIDED",
    "BackfillBody",
    "Elided",
    "Health",
    "HeartbeatBody",
    "HistoryPage",
    "MapItemBody",
    "MapItemPage",
    "MapProgressBody",
    "Problem",
    "Readiness",
    "RunBody",
    "RunCountsBody",
    "RunPage",
    "RunSummaryBody",
    "ScheduleBody",
    "SchedulePage",
    "TaskBody",
    "WaitBody",
    "WorkflowDetail",
    "WorkflowPage",
    "WorkflowRef",
    "WorkflowSummary",
    "WorkflowVersion",
    "WorkflowVersionInfo",
    "elided",
    "elided_marker",
    "elided_path",
]

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where the API listens unless configured otherwise (`api.host`, `api.port`)."""


class _Body(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every API body."""


# --- workflows ------------------------------------------------------------------------


class WorkflowRef(_Body, frozen=True, kw_only=True):
    """Which version of a workflow a registration produced (or matched)."""

    name: str
    version: int


class WorkflowSummary(_Body, frozen=True, kw_only=True):
    """The latest version of a workflow, for lists."""

    name: str
    version: int
    digest: str
    created_at: datetime
    description: str | None = None


class WorkflowVersionInfo(_Body, frozen=True, kw_only=True):
    """One registered version of a workflow, without its definition."""

    version: int
    digest: str
    created_at: datetime


class WorkflowVersion(_Body, frozen=True, kw_only=True):
    """One registered version of a workflow, with its definition."""

    name: str
    version: int
    digest: str
    created_at: datetime
    definition: dict[str, Any]


class WorkflowDetail(_Body, frozen=True, kw_only=True):
    """The latest version of a workflow with the list of its versions, newest first."""

    name: str
    version: int
    digest: str
    created_at: datetime
    definition: dict[str, Any]
    versions: list[WorkflowVersionInfo]


class WorkflowPage(_Body, frozen=True, kw_only=True):
    """A page of workflows, by name; `next_cursor` is null on the last page."""

    items: list[WorkflowSummary]
    next_cursor: str | None = None


# --- runs -----------------------------------------------------------------------------


class MapProgressBody(_Body, frozen=True, kw_only=True):
    """A map task's items at a glance; the items are at `/v1/runs/{id}/tasks/{task}/items`."""

    total: int
    concurrency: int
    dispatched: int
    in_flight: int
    completed: int
    failed: int


class HeartbeatBody(_Body, frozen=True, kw_only=True):
    """The last heartbeat a handler sent (`ctx.heartbeat(details)`), kept across attempts.

    `at` is when the orchestrator received it, `attempt` the attempt that sent it, and
    `details` what the handler passed (JSON, at most 16 KiB; larger details are dropped).
    """

    at: datetime
    attempt: int
    details: Any = None


HEARTBEAT_FIELD = msgspec.Meta(
    description="The task's last heartbeat, `{at, attempt, details}`; null before the first."
)


WaitReason = Literal["signal", "sleep", "retry", "resume"]


class WaitBody(_Body, frozen=True, kw_only=True):
    """What an unfinished task waits for before it goes on, and until when.

    `reason` is `signal` (a `signal` task waits for the signal named `signal`), `sleep` (a
    `sleep` task), `retry` (a failed attempt's backoff; the task's `attempt` is the next) or
    `resume` (a retry came due while the run was paused: it starts on resume). `until` is
    when the wait ends by itself (the sleep's end, the backoff's end, the signal's
    timeout), null when nothing ends it but the event awaited.
    """

    reason: WaitReason
    until: datetime | None = None
    signal: str | None = None


WAITING_FIELD = msgspec.Meta(
    description="What the task waits for, `{reason, until, signal}` (in `GET /v1/runs/{id}`); "
    "null when it waits for nothing but a worker or its dependencies, or has finished."
)


class TaskBody(_Body, frozen=True, kw_only=True):
    """One task of a run; `progress` for a map task, `child_run_id` for a workflow task."""

    task_id: str
    type: str
    status: str
    attempt: int
    input: Any
    output: Any
    error: ErrorInfo | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: MapProgressBody | None = None
    child_run_id: str | None = None
    heartbeat: Annotated[HeartbeatBody | None, HEARTBEAT_FIELD] = None
    waiting: Annotated[WaitBody | None, WAITING_FIELD] = None


class MapItemBody(_Body, frozen=True, kw_only=True):
    """One item of a map task: its own attempts, input, output and error."""

    index: int
    status: str
    attempt: int
    input: Any
    output: Any
    error: ErrorInfo | None
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat: Annotated[HeartbeatBody | None, HEARTBEAT_FIELD] = None


class MapItemPage(_Body, frozen=True, kw_only=True):
    """A page of a map task's items by index; `next_cursor` is null on the last page."""

    items: list[MapItemBody]
    next_cursor: str | None = None


class RunBody(_Body, frozen=True, kw_only=True):
    """A run with its tasks; a child run names its parent run and task."""

    id: str
    workflow: str
    version: int
    status: str
    input: Any
    output: Any
    error: ErrorInfo | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    tasks: list[TaskBody]
    parent_run_id: str | None = None
    parent_task_id: str | None = None
    paused: bool = False
    idempotency_key: str | None = None
    tags: dict[str, str] = {}


class RunSummaryBody(_Body, frozen=True, kw_only=True):
    """A run without its tasks, for lists; `paused` as on the run."""

    id: str
    workflow: str
    version: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    idempotency_key: str | None = None
    paused: bool = False
    tags: dict[str, str] = {}


class RunPage(_Body, frozen=True, kw_only=True):
    """A page of runs, newest first; `next_cursor` is null on the last page."""

    items: list[RunSummaryBody]
    next_cursor: str | None = None


class RunCountsBody(_Body, frozen=True, kw_only=True):
    """Runs per status; each count stops at `cap`, and `capped` says one reached past it."""

    counts: dict[str, int]
    capped: bool
    cap: int


class HistoryPage(_Body, frozen=True, kw_only=True):
    """A page of a run's history, oldest first; `next_cursor` is null on the last page."""

    items: list[HistoryEntry]
    next_cursor: str | None = None


# --- operations and errors ------------------------------------------------------------


class Health(_Body, frozen=True, kw_only=True):
    """The process is up."""

    status: str


class Readiness(_Body, frozen=True, kw_only=True):
    """Whether every dependency answered; `checks` maps each check to "ok" or a reason."""

    status: str
    checks: dict[str, str]


class Problem(_Body, frozen=True, kw_only=True):
    """An RFC 9457 problem; some problems add extension members such as `errors`."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ValidationIssue] | None = None


# --- schedules ----------------------------------------------------------------------------


class ScheduleBody(_Body, frozen=True, kw_only=True):
    """A schedule and where it stands; `cron` with `timezone`, or `interval_seconds`."""

    id: str
    name: str
    workflow: str
    version: int | None
    input: Any
    cron: str | None
    timezone: str
    interval_seconds: float | None
    overlap: str
    catch_up: str
    paused: bool
    next_fire_at: datetime
    last_fire_at: datetime | None
    last_run_id: str | None
    created_at: datetime
    tags: dict[str, str] = {}
    backfill: BackfillBody | None = None


class BackfillBody(_Body, frozen=True, kw_only=True):
    """A backfill in progress: `next` is the next tick to start (null: all started),
    `active` the runs it started that were still running when last looked at."""

    start: datetime
    end: datetime
    max_concurrent: int
    next: datetime | None
    active: list[str]
    started: int


class SchedulePage(_Body, frozen=True, kw_only=True):
    """A page of schedules, by name; `next_cursor` is null on the last page."""

    items: list[ScheduleBody]
    next_cursor: str | None = None


# --- elided values ------------------------------------------------------------------------

ELIDED = "$elided"


class Elided(msgspec.Struct, frozen=True, kw_only=True):
    """A value the server left out of a run's JSON: its size as JSON, and where to get it."""

    bytes: int
    href: str


def elided_marker(size: int, href: str) -> dict[str, Any]:
    """What stands in for a value over the inline bound: `{"$elided": {bytes, href}}`."""
    return {ELIDED: {"bytes": size, "href": href}}


def elided(value: Any) -> Elided | None:
    """The `{"$elided": {bytes, href}}` that `value` is, or None for a value in full."""
    if not (isinstance(value, dict) and len(value) == 1 and isinstance(value.get(ELIDED), dict)):
        return None
    try:
        return msgspec.convert(value[ELIDED], Elided)
    except msgspec.ValidationError:
        return None


def elided_path(marker: Elided) -> str:
    """The value path of an elided value's href (for `get_value`), e.g. `tasks/x/output`."""
    _, sep, path = marker.href.partition("/values/")
    return unquote(path) if sep else marker.href


# --- workers --------------------------------------------------------------------------


class WorkerBody(_Body, frozen=True, kw_only=True):
    """A worker process as it last reported itself; `silent` once it has missed three
    reports (it may have ended without a word, or lost the database)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    handlers: list[str]
    concurrency: int
    inflight: int
    started_at: datetime
    last_seen: datetime
    silent: bool


class QueueBody(_Body, frozen=True, kw_only=True):
    """One queue: the live workers consuming it and the dispatches waiting for one
    (written but not started), with the oldest one's dispatch time."""

    queue: str
    workers: int
    waiting: int
    oldest_waiting_since: datetime | None = None


class WorkersBody(_Body, frozen=True, kw_only=True):
    """The workers that reported in the last day, newest first, and every queue named by
    one of them or by a waiting dispatch."""

    workers: list[WorkerBody]
    queues: list[QueueBody]
    report_interval_seconds: float
