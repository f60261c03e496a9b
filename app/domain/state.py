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


MAX_HEARTBEAT_DETAILS_BYTES = 16 * 1024
"""The most heartbeat details kept, as JSON (workers refuse larger ones before sending)."""


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """The last heartbeat of a task's (or map item's) attempts: when, which, what it said."""

    at: datetime
    attempt: int
    details: Any = None


class MapProgress(msgspec.Struct, frozen=True, kw_only=True):
    """The aggregate of a `map` task's items: all the run state keeps about them.

    The items themselves live in their own rows (see `MapItem`); a decision sees only the
    few it needs, so a 10,000-item map never loads whole per event.
    """

    total: int
    concurrency: int
    next_index: int = 0
    """The first item not dispatched yet (items are dispatched in input order)."""
    in_flight: int = 0
    completed: int = 0
    failed: int = 0

    @property
    def finished(self) -> int:
        return self.completed + self.failed

    @property
    def dispatched(self) -> int:
        """Items sent at least once and not back to pending: in flight (or waiting for a
        retry's backoff) or finished. `next_index` is a cursor, not this count: a retry of
        the run sets it back, and a hold while paused moves it to the held item."""
        return self.in_flight + self.finished


class MapItem(msgspec.Struct, frozen=True, kw_only=True):
    """One item of a `map` task: its own attempts, input and output."""

    task_id: str
    index: int
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    delivery: int = 1
    """As on `TaskState`: the current attempt's delivery number."""
    resends: int = 0
    """As on `TaskState`: schedule-to-start re-sends of the current attempt."""
    heartbeat: Heartbeat | None = None
    """The item's last heartbeat (kept across its attempts)."""


class ItemQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which map items a decision needs loaded: single items, and every item of some tasks."""

    keys: list[tuple[str, int]] = []
    whole: list[str] = []
    pending: list[tuple[str, int, int]] = []
    """`(task_id, start, count)`: the first `count` items of that task still `pending` at
    index `start` or after, in index order (a map's refill; completed items are skipped)."""


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
    progress: MapProgress | None = None
    """A `map` task's aggregate; None for every other type."""
    child_run_id: str | None = None
    """A `workflow` task's child run, once it has been started."""
    delivery: int = 1
    """The current attempt's delivery number: 1 when first sent, one more each time start-up
    recovery sends it again (its copy may have died with the process running it). A worker
    refuses a delivery past its bound (see `DispatchTask.delivery`)."""
    resends: int = 0
    """Schedule-to-start re-sends of the current attempt (see `_redispatch`)."""
    heartbeat: Heartbeat | None = None
    """A handler task's last heartbeat (kept across its attempts)."""


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
    map_items: list[MapItem] = []
    """Only the map items loaded for this decision (see `ItemQuery`), never all of them."""
    paused: bool = False
    """While paused the run records results but starts nothing new (see `_control`)."""
    tags: dict[str, str] = {}
    """Labels fixed at the start, to find the run by (`treadle.domain.tags`)."""
