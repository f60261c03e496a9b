"""Request and response bodies of the HTTP API, as msgspec Structs.

They are separate from the domain and store records on purpose: the JSON a user sees
is a contract (DESIGN.md "Interfaces users touch") and must not change when an
internal record grows a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from app.domain.errors import ValidationIssue
from app.domain.events import HistoryEntry
from app.domain.limits import MAX_VERSION
from app.domain.state import ErrorInfo, Heartbeat, MapProgress, RunState, TaskState
from app.ports import MapItemRecord, RunSummary, StoredWorkflow


class _Body(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every API body."""


class _Request(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies: an unknown field is a typo, so it is an error."""


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


class StartRunRequest(_Request, frozen=True, kw_only=True):
    """Start a run of `workflow` (its latest version unless `version` is given)."""

    workflow: str
    # Bounded like the store's INTEGER column: a larger number could only fail there.
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)] | None = None
    input: Any = None


class CancelRunRequest(_Request, frozen=True, kw_only=True):
    """Why the run is being cancelled (recorded in its history)."""

    reason: str = ""


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


class RunSummaryBody(_Body, frozen=True, kw_only=True):
    """A run without its tasks, for lists."""

    id: str
    workflow: str
    version: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    idempotency_key: str | None = None


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


# --- conversions ----------------------------------------------------------------------


def workflow_ref(stored: StoredWorkflow) -> WorkflowRef:
    return WorkflowRef(name=stored.name, version=stored.version)


def workflow_summary(stored: StoredWorkflow) -> WorkflowSummary:
    description = stored.definition.get("description")
    return WorkflowSummary(
        name=stored.name,
        version=stored.version,
        digest=stored.digest,
        created_at=stored.created_at,
        description=description if isinstance(description, str) else None,
    )


def workflow_version(stored: StoredWorkflow) -> WorkflowVersion:
    return WorkflowVersion(
        name=stored.name,
        version=stored.version,
        digest=stored.digest,
        created_at=stored.created_at,
        definition=stored.definition,
    )


def workflow_detail(latest: StoredWorkflow, versions: list[StoredWorkflow]) -> WorkflowDetail:
    return WorkflowDetail(
        name=latest.name,
        version=latest.version,
        digest=latest.digest,
        created_at=latest.created_at,
        definition=latest.definition,
        versions=[
            WorkflowVersionInfo(version=v.version, digest=v.digest, created_at=v.created_at)
            for v in versions
        ],
    )


def task_body(task: TaskState) -> TaskBody:
    return TaskBody(
        task_id=task.task_id,
        type=task.type,
        status=str(task.status),
        attempt=task.attempt,
        input=task.input,
        output=task.output,
        error=task.error,
        scheduled_at=task.scheduled_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        progress=_progress_body(task.progress),
        child_run_id=task.child_run_id,
        heartbeat=_heartbeat_body(task.heartbeat),
    )


def _heartbeat_body(heartbeat: Heartbeat | None) -> HeartbeatBody | None:
    if heartbeat is None:
        return None
    return HeartbeatBody(at=heartbeat.at, attempt=heartbeat.attempt, details=heartbeat.details)


def _progress_body(progress: MapProgress | None) -> MapProgressBody | None:
    if progress is None:
        return None
    return MapProgressBody(
        total=progress.total,
        concurrency=progress.concurrency,
        dispatched=progress.dispatched,
        in_flight=progress.in_flight,
        completed=progress.completed,
        failed=progress.failed,
    )


def map_item_body(item: MapItemRecord) -> MapItemBody:
    return MapItemBody(
        index=item.index,
        status=item.status,
        attempt=item.attempt,
        input=item.input,
        output=item.output,
        error=item.error,
        scheduled_at=item.scheduled_at,
        started_at=item.started_at,
        finished_at=item.finished_at,
        heartbeat=_heartbeat_body(item.heartbeat),
    )


def run_body(run: RunState) -> RunBody:
    # Tasks keep the order of the run state's dict: the definition's order.
    return RunBody(
        id=run.id,
        workflow=run.workflow,
        version=run.version,
        status=str(run.status),
        input=run.input,
        output=run.output,
        error=run.error,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        tasks=[task_body(task) for task in run.tasks.values()],
        parent_run_id=run.parent_run_id,
        parent_task_id=run.parent_task_id,
        paused=run.paused,
        idempotency_key=run.idempotency_key,
    )


def run_summary(run: RunSummary) -> RunSummaryBody:
    return RunSummaryBody(
        id=run.id,
        workflow=run.workflow,
        version=run.version,
        status=run.status,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        idempotency_key=run.idempotency_key,
    )
