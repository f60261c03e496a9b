"""The HTTP API's request bodies, and the functions that build response bodies from
domain and store records.

The response bodies themselves live in `treadle.api_types`, which the typed client shares;
they are re-exported here for the routes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from treadle.api_types import (
    Health,
    HeartbeatBody,
    HistoryPage,
    MapItemBody,
    MapItemPage,
    MapProgressBody,
    Problem,
    Readiness,
    RunBody,
    RunCountsBody,
    RunPage,
    RunSummaryBody,
    TaskBody,
    WaitBody,
    WorkflowDetail,
    WorkflowPage,
    WorkflowRef,
    WorkflowSummary,
    WorkflowVersion,
    WorkflowVersionInfo,
)
from treadle.domain.limits import MAX_VERSION
from treadle.domain.state import Heartbeat, MapProgress, RunState, TaskState
from treadle.ports import MapItemRecord, RunSummary, StoredWorkflow

__all__ = [
    "CancelRunRequest",
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
    "StartRunRequest",
    "TaskBody",
    "WorkflowDetail",
    "WorkflowPage",
    "WorkflowRef",
    "WorkflowSummary",
    "WorkflowVersion",
    "WorkflowVersionInfo",
    "map_item_body",
    "run_body",
    "run_summary",
    "task_body",
    "workflow_detail",
    "workflow_ref",
    "workflow_summary",
    "workflow_version",
]


class _Request(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies: an unknown field is a typo, so it is an error."""


class StartRunRequest(_Request, frozen=True, kw_only=True):
    """Start a run of `workflow` (its latest version unless `version` is given)."""

    workflow: str
    # Bounded like the store's INTEGER column: a larger number could only fail there.
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)] | None = None
    input: Any = None
    tags: dict[str, Any] | None = None
    """Labels to find the run by (`?tag=key:value`); over the definition's default tags."""


class CancelRunRequest(_Request, frozen=True, kw_only=True):
    """Why the run is being cancelled (recorded in its history)."""

    reason: str = ""


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


def task_body(task: TaskState, waiting: WaitBody | None = None) -> TaskBody:
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
        waiting=waiting,
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


def run_body(run: RunState, waits: Mapping[str, WaitBody] | None = None) -> RunBody:
    """The run's body; `waits` says what each waiting task waits for (see `_waits`)."""
    waits = waits or {}
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
        tasks=[task_body(task, waits.get(task.task_id)) for task in run.tasks.values()],
        parent_run_id=run.parent_run_id,
        parent_task_id=run.parent_task_id,
        paused=run.paused,
        idempotency_key=run.idempotency_key,
        tags=run.tags,
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
        paused=run.paused,
        tags=run.tags,
    )
