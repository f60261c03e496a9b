"""Request and response bodies of the HTTP API, as msgspec Structs.

They are separate from the domain and store records on purpose: the JSON a user sees
is a contract (DESIGN.md "Interfaces users touch") and must not change when an
internal record grows a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from app.domain.errors import ValidationIssue
from app.domain.events import HistoryEntry
from app.domain.state import ErrorInfo, RunState, TaskState
from app.ports import RunSummary, StoredWorkflow


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
    version: int | None = None
    input: Any = None


class CancelRunRequest(_Request, frozen=True, kw_only=True):
    """Why the run is being cancelled (recorded in its history)."""

    reason: str = ""


class TaskBody(_Body, frozen=True, kw_only=True):
    """One task of a run."""

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


class RunBody(_Body, frozen=True, kw_only=True):
    """A run with its tasks."""

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


class RunSummaryBody(_Body, frozen=True, kw_only=True):
    """A run without its tasks, for lists."""

    id: str
    workflow: str
    version: int
    status: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RunPage(_Body, frozen=True, kw_only=True):
    """A page of runs, newest first; `next_cursor` is null on the last page."""

    items: list[RunSummaryBody]
    next_cursor: str | None = None


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
    )
