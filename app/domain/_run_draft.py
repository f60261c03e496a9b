"""The decision being built, and the moves that end tasks and runs; used by the decider."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from treadle.domain import _resolve as resolve
from treadle.domain._cost import Meter
from treadle.domain._task_rules import RetryPolicy
from treadle.domain.compile import CompiledTask, Workflow
from treadle.domain.errors import (
    DynamicValueInvalid,
    ExpressionBudgetExceeded,
    ExpressionError,
    ExpressionTooLarge,
)
from treadle.domain.events import (
    CancelAttempts,
    CancelChildRun,
    CancelMapItems,
    CancelTimer,
    Command,
    Decision,
    DispatchTask,
    HistoryEntry,
    RunFinished,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TimerKind,
)
from treadle.domain.expressions import METER
from treadle.domain.keys import TimerKey
from treadle.domain.state import ErrorInfo, RunState, RunStatus, TaskState, TaskStatus

DISPATCHED_TYPES = frozenset({"handler", "http"})
ACTIVE = frozenset({TaskStatus.SCHEDULED, TaskStatus.RUNNING})


class Draft:
    """The decision being built: copies of the run's pieces, edited, then frozen again."""

    def __init__(self, workflow: Workflow, state: RunState, now: datetime) -> None:
        self.workflow = workflow
        self.original = state
        self.now = now
        self.run_changes: dict[str, Any] = {}
        self.tasks = dict(state.tasks)
        self.signals = {name: list(payloads) for name, payloads in state.signals.items()}
        self.items = {(item.task_id, item.index): item for item in state.map_items}
        self.commands: list[Command] = []
        self.history: list[HistoryEntry] = []
        # Every expression this decision renders spends from one budget.
        self.meter = Meter(workflow.limits.max_decision_expression_cost)
        self.quiet = False
        """Set when the state changed with nothing to record (see `Decision.quiet`)."""

    @property
    def status(self) -> RunStatus:
        status: RunStatus = self.run_changes.get("status", self.original.status)
        return status

    @property
    def paused(self) -> bool:
        """Whether the run is paused: it records results but starts nothing new."""
        paused: bool = self.run_changes.get("paused", self.original.paused)
        return paused

    def update_run(self, **changes: Any) -> None:
        self.run_changes.update(changes)

    def update_task(self, task_id: str, **changes: Any) -> None:
        self.tasks[task_id] = msgspec.structs.replace(self.tasks[task_id], **changes)

    def record(
        self,
        kind: str,
        task_id: str | None = None,
        attempt: int | None = None,
        data: Any = None,
    ) -> None:
        self.history.append(
            HistoryEntry(type=kind, at=self.now, task_id=task_id, attempt=attempt, data=data)
        )

    def command(self, command: Command) -> None:
        self.commands.append(command)

    def context(self) -> dict[Any, Any]:
        """What expressions see: the input, each task's output and status, the run."""
        return {
            "input": self.original.input,
            "tasks": {
                task_id: {"output": task.output, "status": task.status.value}
                for task_id, task in self.tasks.items()
            },
            "run": {
                "id": self.original.id,
                "workflow": self.original.workflow,
                "version": self.original.version,
            },
            METER: self.meter,
        }

    def decision(self) -> Decision:
        if not self.history and not self.commands and not self.quiet:
            return Decision(state=self.original)
        state = msgspec.structs.replace(
            self.original,
            tasks=self.tasks,
            signals=self.signals,
            map_items=list(self.items.values()),
            **self.run_changes,
        )
        return Decision(state=state, commands=self.commands, history=self.history, quiet=self.quiet)


def complete_task(d: Draft, task_id: str, attempt: int, output: Any) -> None:
    d.update_task(
        task_id, status=TaskStatus.COMPLETED, output=output, error=None, finished_at=d.now
    )
    d.record("task.completed", task_id, attempt)


def awaiting_backoff(task: TaskState) -> bool:
    return task.status is TaskStatus.SCHEDULED and task.scheduled_at is None


def fail_task(d: Draft, task_id: str, error: ErrorInfo) -> None:
    """The task failed for good without an attempt to retry (bad expression, unsupported)."""
    attempt = d.tasks[task_id].attempt
    d.update_task(task_id, status=TaskStatus.FAILED, error=error, finished_at=d.now)
    d.record("task.failed", task_id, attempt or None, data={"error": msgspec.to_builtins(error)})
    fail_run(d, task_id, error)


def fail_run(d: Draft, task_id: str, error: ErrorInfo) -> None:
    message = f"task '{task_id}' failed: {error.type}: {error.message}"
    run_error = ErrorInfo(type="TaskFailed", message=message, retryable=False)
    finish(d, RunStatus.FAILED, history="run.failed", error=run_error)


def finish(
    d: Draft,
    status: RunStatus,
    *,
    history: str,
    output: Any = None,
    error: ErrorInfo | None = None,
    data: Any = None,
    fired: TimerKind | None = None,
) -> None:
    """End the run: cancel what is still going, drop every timer, announce the end."""
    was_running = d.status is RunStatus.RUNNING
    attempts_out = False
    for task_id, task in list(d.tasks.items()):
        if not task.status.is_terminal:
            attempts_out = attempts_out or _has_attempts_out(d, task_id, task)
            cancel_task_timers(d, task_id, task)
            d.update_task(task_id, status=TaskStatus.CANCELLED, finished_at=d.now)
            d.record("task.cancelled", task_id, task.attempt or None)
    if was_running and d.workflow.timeout_seconds is not None and fired is None:
        d.command(CancelTimer(run_id=d.original.id, kind=TimerKind.RUN_TIMEOUT))
    d.update_run(status=status, output=output, error=error, finished_at=d.now)
    if data is None and error is not None:
        data = {"error": msgspec.to_builtins(error)}
    d.record(history, data=data)
    if attempts_out:
        # Workers still running one of its attempts stop it (one message for the run).
        reason = f"the run ended {status.value}"
        d.command(CancelAttempts(run_id=d.original.id, reason=reason))
    d.command(
        RunFinished(
            run_id=d.original.id,
            status=status,
            output=output,
            error=error,
            parent_run_id=d.original.parent_run_id,
            parent_task_id=d.original.parent_task_id,
        )
    )


def _has_attempts_out(d: Draft, task_id: str, task: TaskState) -> bool:
    """Whether a worker may be running an attempt of this unfinished task (or its items)."""
    compiled = d.workflow.tasks.get(task_id)
    if compiled is None or task.status not in ACTIVE:
        return False
    if compiled.type in DISPATCHED_TYPES:
        return not awaiting_backoff(task)
    return compiled.type == "map" and task.progress is not None and task.progress.in_flight > 0


def cancel_task_timers(d: Draft, task_id: str, task: TaskState) -> None:
    compiled = d.workflow.tasks.get(task_id)
    if compiled is None or task.status not in ACTIVE:
        return
    run_id = d.original.id
    if compiled.type in DISPATCHED_TYPES:
        kind = TimerKind.ATTEMPT_TIMEOUT
        d.command(CancelTimer(run_id=run_id, kind=kind, task_id=task_id, attempt=task.attempt))
        if task.status is TaskStatus.RUNNING and compiled.heartbeat_timeout_seconds is not None:
            kind = TimerKind.HEARTBEAT_TIMEOUT
            d.command(CancelTimer(run_id=run_id, kind=kind, task_id=task_id, attempt=task.attempt))
        if task.status is TaskStatus.SCHEDULED and not awaiting_backoff(task):
            disarm_dispatch_timeout(d, compiled, task_id, task.attempt)
        if awaiting_backoff(task):
            kind = TimerKind.RETRY
            d.command(CancelTimer(run_id=run_id, kind=kind, task_id=task_id, attempt=task.attempt))
    elif compiled.type == "sleep":
        d.command(CancelTimer(run_id=run_id, kind=TimerKind.SLEEP, task_id=task_id, attempt=1))
    elif compiled.type == "signal" and compiled.signal_may_time_out:
        kind = TimerKind.SIGNAL_TIMEOUT
        d.command(CancelTimer(run_id=run_id, kind=kind, task_id=task_id, attempt=1))
    elif compiled.type == "map":
        # Item timers left behind fire into a finished task and are dropped as stale.
        d.command(CancelMapItems(run_id=run_id, task_id=task_id))
        if compiled.timeout_seconds is not None:
            kind = TimerKind.MAP_TIMEOUT
            d.command(CancelTimer(run_id=run_id, kind=kind, task_id=task_id, attempt=task.attempt))
    elif compiled.type == "workflow" and task.child_run_id is not None:
        reason = f"its parent run's task '{task_id}' ended"
        d.command(
            CancelChildRun(
                run_id=run_id, task_id=task_id, child_run_id=task.child_run_id, reason=reason
            )
        )


def after(now: datetime, seconds: float) -> datetime:
    """`now + seconds`, clamped so an absurd duration cannot overflow the calendar."""
    try:
        return now + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=now.tzinfo)


def dynamic_value_error(exc: DynamicValueInvalid) -> ErrorInfo:
    """A task field written as an expression took a value it cannot have: never retried."""
    return ErrorInfo(type="InvalidValue", message=str(exc), retryable=False)


def retry_policy(d: Draft, compiled: CompiledTask) -> RetryPolicy:
    """The task's retry policy, its expression fields (if any) evaluated now."""
    return resolve.retry_policy(
        compiled.retry, compiled.dynamic, d.context(), d.workflow.limits, path=_retry_path(compiled)
    )


def _retry_path(compiled: CompiledTask) -> str:
    return f"tasks.{compiled.id}.retry"


def expression_error(exc: ExpressionError) -> ErrorInfo:
    # A value over limits.max_expression_bytes or work over the cost budget gets its own
    # type, told apart from a plain evaluation error; neither is retried (same data, same end).
    limited = isinstance(exc, ExpressionTooLarge | ExpressionBudgetExceeded)
    kind = "ExpressionLimit" if limited else "ExpressionError"
    return ErrorInfo(type=kind, message=str(exc), retryable=False)


def dispatch_command(
    d: Draft,
    task_id: str,
    compiled: CompiledTask,
    *,
    attempt: int,
    input: Any,
    item: int | None = None,
    delivery: int = 1,
) -> DispatchTask:
    """The dispatch of one attempt of a task (or of one map item, with `item`)."""
    return DispatchTask(
        run_id=d.original.id,
        task_id=task_id,
        attempt=attempt,
        task_type=compiled.type,
        queue=compiled.queue,
        handler=compiled.handler,
        input=input,
        timeout_seconds=compiled.timeout_seconds,
        workflow=d.original.workflow,
        version=d.original.version,
        item=item,
        delivery=delivery,
        heartbeat_timeout_seconds=compiled.heartbeat_timeout_seconds,
    )


def arm_dispatch_timeout(
    d: Draft,
    compiled: CompiledTask,
    task_id: str,
    attempt: int,
    *,
    item: int | None = None,
    seconds: float | None = None,
) -> None:
    """Start the schedule-to-start timer of a dispatched attempt, if its task has a limit.

    `seconds` overrides the limit (a re-dispatch waits longer each time; see _redispatch).
    """
    limit = compiled.schedule_to_start_seconds
    if limit is None:
        return  # off: no timer, so no write per dispatch
    wait = limit if seconds is None else seconds
    start_attempt_timer(d, TimerKind.DISPATCH_TIMEOUT, wait, task_id, attempt, item=item)


def disarm_dispatch_timeout(
    d: Draft, compiled: CompiledTask, task_id: str, attempt: int, *, item: int | None = None
) -> None:
    """Drop the schedule-to-start timer: the attempt started, ended, or was cancelled."""
    if compiled.schedule_to_start_seconds is not None:
        cancel_attempt_timer(d, TimerKind.DISPATCH_TIMEOUT, task_id, attempt, item=item)


def start_attempt_timer(
    d: Draft, kind: TimerKind, seconds: float, task_id: str, attempt: int, *, item: int | None
) -> None:
    """Start (or move on) one of an attempt's timers, due `seconds` from now."""
    d.command(
        StartTimer(
            run_id=d.original.id,
            kind=kind,
            task_id=task_id,
            attempt=attempt,
            item=item,
            fire_at=after(d.now, seconds),
        )
    )


def cancel_attempt_timer(
    d: Draft, kind: TimerKind, task_id: str, attempt: int, *, item: int | None
) -> None:
    """Drop one of an attempt's timers."""
    d.command(
        CancelTimer(run_id=d.original.id, kind=kind, task_id=task_id, attempt=attempt, item=item)
    )


Rule = Callable[..., None]
"""A decider rule: `(draft, event)`, or `(draft, event, advance)` for a map item's."""


def with_carried_start(start: Rule, end: Rule) -> Rule:
    """The rule for a result that may carry its attempt's start.

    A quick attempt reports its start and its result in one message (`started_at` on the
    result). The start is decided first, by `start` (the `task.started` rule: it changes
    nothing unless the attempt is still scheduled, so a start already decided, a
    redelivery or a stale attempt are left as they are), then the result by `end`, in one
    decision: the history shows start then end. The timers the start arms and the end
    drops are never written.
    """

    def decide_result(d: Draft, event: TaskCompleted | TaskFailed, *args: Any) -> None:
        if event.started_at is None:
            end(d, event, *args)
            return
        mark = len(d.commands)
        start(d, event, *args)
        end(d, event, *args)
        _drop_timers_started_then_cancelled(d, mark)

    return decide_result


def _drop_timers_started_then_cancelled(d: Draft, since: int) -> None:
    """Leave out each timer started after `since` that a later command cancels.

    The store cancels timers before it starts them, so such a pair would leave the timer
    behind. The cancel stays: it may also drop a row written before this decision.
    """
    cancelled_after: set[TimerKey] = set()
    kept: list[Command] = []
    for command in reversed(d.commands[since:]):
        if isinstance(command, CancelTimer):
            cancelled_after.add(command.timer_key)
        elif isinstance(command, StartTimer) and command.timer_key in cancelled_after:
            continue
        kept.append(command)
    d.commands[since:] = reversed(kept)
