"""Run and task state: what the store persists and the decider transforms."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec


class RunStatus(StrEnum):
    """Lifecycle of a run."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class TaskStatus(StrEnum):
    """Lifecycle of one task of a run (across its attempts)."""

    PENDING = "pending"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_TASK


_TERMINAL_TASK = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    }
)


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Why an attempt or a run failed."""

    type: str
    message: str
    traceback: str | None = None
    retryable: bool = True


class TaskState(msgspec.Struct, frozen=True, kw_only=True):
    """One task of a run. `attempt` is the current (latest) attempt, 0 before the first."""

    task_id: str
    type: str = "handler"
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class RunState(msgspec.Struct, frozen=True, kw_only=True):
    """A run with every task. The decider returns a new one; it never mutates."""

    id: str
    workflow: str
    version: int
    status: RunStatus = RunStatus.PENDING
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    tasks: dict[str, TaskState] = {}
    idempotency_key: str | None = None
    parent_run_id: str | None = None
    parent_task_id: str | None = None
    signals: dict[str, list[Any]] = {}
    """Signals received that no `signal` task has consumed yet, by name, oldest first."""
