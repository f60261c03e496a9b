"""What the decider consumes (events) and what it asks for (commands).

Events and some commands travel on the wire too (see `treadle.messages`), so each is a
tagged Struct: `type` names it in JSON.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import msgspec

from treadle.domain.keys import AttemptFields, TimerFields
from treadle.domain.state import ErrorInfo, RunState, RunStatus


class _Tagged(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base for tagged wire/domain Structs."""


# --- events -----------------------------------------------------------------------


class RunStarted(_Tagged, frozen=True, kw_only=True, tag="run.started"):
    """The run was created and should begin; its input is already in the run state."""

    run_id: str


class TaskStarted(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.started"):
    """A worker began an attempt."""

    run_id: str
    task_id: str
    attempt: int
    worker: str = ""
    started_at: datetime | None = None
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class TaskCompleted(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.completed"):
    """An attempt finished with an output."""

    run_id: str
    task_id: str
    attempt: int
    output: Any = None
    worker: str = ""
    item: int | None = None
    """The item index when this is about one item of a `map` task."""
    started_at: datetime | None = None
    """Set when the attempt's start was not reported on its own (a quick attempt): this
    result then stands for its `task.started` too, which the decider applies first."""


class TaskFailed(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.failed"):
    """An attempt raised; `error.retryable` false stops further attempts."""

    run_id: str
    task_id: str
    attempt: int
    error: ErrorInfo
    worker: str = ""
    item: int | None = None
    """The item index when this is about one item of a `map` task."""
    started_at: datetime | None = None
    """As on `TaskCompleted`: the start of an attempt not reported on its own."""


class TaskHeartbeat(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.heartbeat"):
    """A running attempt is alive; `details` is whatever the handler reported."""

    run_id: str
    task_id: str
    attempt: int
    details: Any = None
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class TimerKind(StrEnum):
    """Why a durable timer exists."""

    RETRY = "retry"  # the backoff of a failed attempt elapsed: dispatch the next one
    ATTEMPT_TIMEOUT = "attempt_timeout"  # start-to-close of one attempt
    RUN_TIMEOUT = "run_timeout"  # the run's own deadline
    SLEEP = "sleep"  # a `sleep` task is due
    SIGNAL_TIMEOUT = "signal_timeout"  # a `signal` task waited too long
    MAP_TIMEOUT = "map_timeout"  # a `map` task's own deadline, over all its items
    DISPATCH_TIMEOUT = "dispatch_timeout"  # schedule-to-start: a dispatch that never started
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"  # a running attempt stopped heartbeating


class TimerFired(_Tagged, TimerFields, frozen=True, kw_only=True, tag="timer.fired"):
    """A durable timer came due."""

    run_id: str
    kind: TimerKind
    task_id: str | None = None
    attempt: int = 0
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class SignalReceived(_Tagged, frozen=True, kw_only=True, tag="signal.received"):
    """An external signal was sent to the run."""

    run_id: str
    name: str
    payload: Any = None


class CancelRequested(_Tagged, frozen=True, kw_only=True, tag="run.cancel_requested"):
    """Someone asked for the run to stop."""

    run_id: str
    reason: str = ""


class DispatchLost(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.dispatch_lost"):
    """An attempt's dispatch may be gone (in-process transport restarted): send it again."""

    run_id: str
    task_id: str
    attempt: int
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class RetryRequested(_Tagged, frozen=True, kw_only=True, tag="run.retry_requested"):
    """Someone asked a failed or timed-out run to resume from the tasks that failed."""

    run_id: str


class PauseRequested(_Tagged, frozen=True, kw_only=True, tag="run.pause_requested"):
    """Someone asked the run to start nothing new until resumed."""

    run_id: str


class ResumeRequested(_Tagged, frozen=True, kw_only=True, tag="run.resume_requested"):
    """Someone asked a paused run to carry on."""

    run_id: str


class ChildRunStarted(_Tagged, frozen=True, kw_only=True, tag="child.started"):
    """The orchestrator started (or found) the child run of a `workflow` task."""

    run_id: str
    task_id: str
    attempt: int
    child_run_id: str


class ChildRunFinished(_Tagged, frozen=True, kw_only=True, tag="child.finished"):
    """The child run of a `workflow` task ended; `run_id` is the parent's.

    `child_run_id` is None when the child could not be started at all (`error` says why).
    """

    run_id: str
    task_id: str
    status: RunStatus
    child_run_id: str | None = None
    output: Any = None
    error: ErrorInfo | None = None


Event = (
    RunStarted
    | TaskStarted
    | TaskCompleted
    | TaskFailed
    | TaskHeartbeat
    | TimerFired
    | SignalReceived
    | CancelRequested
    | DispatchLost
    | ChildRunStarted
    | ChildRunFinished
    | RetryRequested
    | PauseRequested
    | ResumeRequested
)


# --- commands ---------------------------------------------------------------------


class DispatchTask(_Tagged, AttemptFields, frozen=True, kw_only=True, tag="task.dispatch"):
    """Send one attempt of a task to the workers of its queue."""

    run_id: str
    task_id: str
    attempt: int
    task_type: str
    queue: str
    handler: str | None = None
    input: Any = None
    timeout_seconds: float | None = None
    workflow: str = ""
    version: int = 0
    item: int | None = None
    """The item index when this is about one item of a `map` task."""
    delivery: int = 1
    """How many times the orchestrator has sent this attempt: 1, plus one per re-send by
    start-up recovery (the in-process transport keeps no delivery count of its own). A
    worker counts the larger of this and its broker's delivery count."""
    heartbeat_timeout_seconds: float | None = None
    """The task's `heartbeat_timeout`: the worker paces the attempt's heartbeats by it."""

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts: a handler uses it to make its side effect once."""
        if self.item is not None:
            return f"{self.run_id}/{self.task_id}/{self.item}"
        return f"{self.run_id}/{self.task_id}"


class StartTimer(_Tagged, TimerFields, frozen=True, kw_only=True, tag="timer.start"):
    """Create (or replace) the durable timer identified by (run, kind, task, attempt)."""

    run_id: str
    kind: TimerKind
    fire_at: datetime
    task_id: str | None = None
    attempt: int = 0
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class CancelTimer(_Tagged, TimerFields, frozen=True, kw_only=True, tag="timer.cancel"):
    """Delete the durable timer identified by (run, kind, task, attempt), if any."""

    run_id: str
    kind: TimerKind
    task_id: str | None = None
    attempt: int = 0
    item: int | None = None
    """The item index when this is about one item of a `map` task."""


class RunFinished(_Tagged, frozen=True, kw_only=True, tag="run.finished"):
    """The run reached a terminal status (for notifications and parent runs)."""

    run_id: str
    status: RunStatus
    output: Any = None
    error: ErrorInfo | None = None
    parent_run_id: str | None = None
    parent_task_id: str | None = None


class StartChildRun(_Tagged, frozen=True, kw_only=True, tag="child.start"):
    """Start the child run of a `workflow` task; `run_id` is the parent's.

    The orchestrator starts it with an idempotency key made of the parent's run, task and
    attempt, so handling this command twice never starts two children.
    """

    run_id: str
    task_id: str
    attempt: int
    workflow: str
    version: int | None = None
    input: Any = None

    @property
    def idempotency_key(self) -> str:
        return f"treadle.child:{self.run_id}/{self.task_id}/{self.attempt}"


class CancelChildRun(_Tagged, frozen=True, kw_only=True, tag="child.cancel"):
    """Cancel a child run because its parent's task ended; `run_id` is the parent's."""

    run_id: str
    task_id: str
    child_run_id: str
    reason: str = ""


class CancelAttempts(_Tagged, frozen=True, kw_only=True, tag="task.cancel"):
    """Tell every worker to stop the attempts this names, which the run no longer waits for.

    Unset fields match anything: only `run_id` names every attempt of the run (it ended);
    with `task_id`, `attempt` (and `item` for a map item) it names one attempt (it timed
    out). Broadcast to every worker; the ones not running a match ignore it.
    """

    run_id: str
    task_id: str | None = None
    attempt: int | None = None
    item: int | None = None
    reason: str = ""

    def matches(self, run_id: str, task_id: str, attempt: int, item: int | None) -> bool:
        """Whether the attempt `(run_id, task_id, attempt, item)` is one this names."""
        return (
            run_id == self.run_id
            and self.task_id in (None, task_id)
            and self.attempt in (None, attempt)
            and self.item in (None, item)
        )


class CancelMapItems(_Tagged, frozen=True, kw_only=True, tag="map.cancel_items"):
    """Mark every unfinished item of a map task cancelled (the task ended early)."""

    run_id: str
    task_id: str


Command = (
    DispatchTask
    | StartTimer
    | CancelTimer
    | RunFinished
    | StartChildRun
    | CancelChildRun
    | CancelMapItems
    | CancelAttempts
)


# --- history and decisions ----------------------------------------------------------


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One line of a run's history, as `GET /v1/runs/{id}/events` shows it."""

    type: str
    at: datetime
    task_id: str | None = None
    attempt: int | None = None
    data: Any = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """The decider's answer: the new state, what to do, and what to record."""

    state: RunState
    commands: list[Command] = []
    history: list[HistoryEntry] = []
    quiet: bool = False
    """The state changed with nothing to record: a heartbeat (one history row per beat
    would grow the history without bound)."""

    @property
    def changed(self) -> bool:
        return bool(self.commands or self.history or self.quiet)
