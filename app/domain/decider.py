"""The decider: one pure function from (workflow, run state, event, now) to a Decision.

It does no I/O and never raises: an event that no longer applies (an old attempt's
result, a duplicate, anything after the run finished) returns the state unchanged with
no commands. Every state change appends a history entry, so "changed" and "recorded"
are the same thing.

An attempt that failed with retries left waits for its backoff as `scheduled` with the
next attempt number and no `scheduled_at`; the RETRY timer dispatches it and stamps
`scheduled_at`. A late result of the failed attempt is then stale by its attempt number.

A quick attempt's result carries its start (`started_at`): it is decided as the start,
then the result, in the one decision (`with_carried_start`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from treadle.domain import _branching as branching
from treadle.domain import _child as child
from treadle.domain import _control as control
from treadle.domain import _dynamic as dynamic
from treadle.domain import _heartbeat as heartbeat
from treadle.domain import _map as map_
from treadle.domain import _map_control as map_control
from treadle.domain import _redispatch as redispatch
from treadle.domain import _resolve as resolve
from treadle.domain._retry import retry_of
from treadle.domain._run_draft import (
    ACTIVE,
    DISPATCHED_TYPES,
    Draft,
    after,
    arm_dispatch_timeout,
    awaiting_backoff,
    complete_task,
    disarm_dispatch_timeout,
    dispatch_command,
    dynamic_value_error,
    expression_error,
    fail_run,
    fail_task,
    finish,
    retry_policy,
    with_carried_start,
)
from treadle.domain._task_rules import CompiledTask
from treadle.domain.compile import Workflow
from treadle.domain.errors import DynamicValueInvalid, ExpressionError
from treadle.domain.events import (
    CancelRequested,
    CancelTimer,
    ChildRunFinished,
    ChildRunStarted,
    Decision,
    DispatchLost,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RunStarted,
    SignalReceived,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.expressions import is_truthy
from treadle.domain.state import ErrorInfo, RunState, RunStatus, TaskState, TaskStatus

__all__ = ["decide", "new_run"]


def new_run(
    workflow: Workflow,
    *,
    run_id: str,
    version: int,
    input: Any,
    now: datetime,
    idempotency_key: str | None = None,
    parent_run_id: str | None = None,
    parent_task_id: str | None = None,
) -> RunState:
    """A pending run with every task pending; `RunStarted` sets it going."""
    return RunState(
        id=run_id,
        workflow=workflow.name,
        version=version,
        input=input,
        created_at=now,
        tasks={
            task_id: TaskState(task_id=task_id, type=task.type)
            for task_id, task in workflow.tasks.items()
        },
        idempotency_key=idempotency_key,
        parent_run_id=parent_run_id,
        parent_task_id=parent_task_id,
    )


def decide(workflow: Workflow, state: RunState, event: Event, now: datetime) -> Decision:
    """Apply one event to a run: the new state, the commands to carry out, the history."""
    if event.run_id != state.id:
        return Decision(state=state)
    draft = Draft(workflow, state, now)
    on_item = map_.item_handler(event)
    if on_item is not None:
        on_item(draft, event, _advance)
        return draft.decision()
    apply = _APPLY.get(type(event))
    if apply is not None:
        apply(draft, event)
    return draft.decision()


# --- run lifecycle ------------------------------------------------------------------


def _on_run_started(d: Draft, event: RunStarted) -> None:
    if d.status is not RunStatus.PENDING:
        return
    d.update_run(status=RunStatus.RUNNING, started_at=d.now)
    d.record("run.started")
    if d.workflow.timeout_seconds is not None:
        fire_at = after(d.now, d.workflow.timeout_seconds)
        d.command(StartTimer(run_id=d.original.id, kind=TimerKind.RUN_TIMEOUT, fire_at=fire_at))
    _advance(d)


def _on_cancel_requested(d: Draft, event: CancelRequested) -> None:
    if d.status.is_terminal:
        return
    finish(d, RunStatus.CANCELLED, history="run.cancelled", data={"reason": event.reason})


def _advance(d: Draft) -> None:
    """Start, skip or fail every pending task whose dependencies are all done."""
    for task_id in d.workflow.order:
        if d.status is not RunStatus.RUNNING:
            return
        if d.paused:
            break  # a paused run starts nothing; it may still complete below
        task, compiled = d.tasks.get(task_id), d.workflow.tasks.get(task_id)
        if task is None or compiled is None or task.status is not TaskStatus.PENDING:
            continue
        verdict = branching.readiness(compiled, d.tasks)
        if verdict == branching.WAIT:
            continue
        if isinstance(verdict, branching.Skip):
            _skip(d, task_id, verdict.reason)
        elif compiled.when is not None and not _when_holds(d, task_id, compiled):
            if d.status is RunStatus.RUNNING:
                _skip(d, task_id, "its when expression is false")
        else:
            ready = _with_dynamic_values(d, task_id, compiled)
            if ready is not None:
                _START[compiled.type](d, task_id, ready)
    if d.status is RunStatus.RUNNING and all(t.status.is_terminal for t in d.tasks.values()):
        _complete_run(d)


def _when_holds(d: Draft, task_id: str, compiled: CompiledTask) -> bool:
    """Whether `when` is true; an expression error fails the task (and so the run)."""
    assert compiled.when is not None
    try:
        return is_truthy(compiled.when.render(d.context()))
    except ExpressionError as exc:
        fail_task(d, task_id, expression_error(exc))
        return False


def _with_dynamic_values(d: Draft, task_id: str, compiled: CompiledTask) -> CompiledTask | None:
    """The task with its expression fields evaluated, or None: a bad value failed it."""
    try:
        return resolve.resolved(compiled, d.context(), d.workflow.limits, f"tasks.{task_id}")
    except DynamicValueInvalid as exc:
        fail_task(d, task_id, dynamic_value_error(exc))
        return None


def _skip(d: Draft, task_id: str, reason: str) -> None:
    d.update_task(task_id, status=TaskStatus.SKIPPED, finished_at=d.now)
    d.record("task.skipped", task_id, data={"reason": reason})


def _complete_run(d: Draft) -> None:
    if any(t.status in (TaskStatus.FAILED, TaskStatus.TIMED_OUT) for t in d.tasks.values()):
        return  # cannot happen: a failed task fails the run at once; kept for totality
    try:
        output = d.workflow.output.render(d.context())
    except ExpressionError as exc:
        error = expression_error(exc)
        finish(d, RunStatus.FAILED, history="run.failed", error=error)
        return
    finish(d, RunStatus.COMPLETED, history="run.completed", output=output)


# --- starting tasks -----------------------------------------------------------------


def _start_dispatched(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """First attempt of a handler or http task: render its input and send it."""
    template = compiled.request if compiled.type == "http" else compiled.input
    try:
        rendered = template.render(d.context()) if template is not None else None
    except ExpressionError as exc:
        fail_task(d, task_id, expression_error(exc))
        return
    attempt = d.tasks[task_id].attempt + 1
    d.update_task(
        task_id, status=TaskStatus.SCHEDULED, attempt=attempt, input=rendered, scheduled_at=d.now
    )
    _dispatch(d, task_id, compiled)


def _dispatch(d: Draft, task_id: str, compiled: CompiledTask, *, again: bool = False) -> None:
    """Send the task's current attempt; `again`: once more after a restart lost its copy,
    which counts as one more delivery of it (a first send starts the counts afresh)."""
    task = d.tasks[task_id]
    if again:
        d.update_task(task_id, delivery=task.delivery + 1)
    else:
        d.update_task(task_id, delivery=1, resends=0)
    delivery = d.tasks[task_id].delivery
    d.command(
        dispatch_command(
            d, task_id, compiled, attempt=task.attempt, input=task.input, delivery=delivery
        )
    )
    arm_dispatch_timeout(d, compiled, task_id, task.attempt)
    data: dict[str, Any] = {"queue": compiled.queue}
    if again:
        data["redispatch"] = True
        data["delivery"] = delivery
    d.record("task.scheduled", task_id, task.attempt, data=data)


def _start_sleep(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    if compiled.sleep_until is not None:
        fire_at = compiled.sleep_until
    else:
        fire_at = after(d.now, compiled.sleep_seconds or 0.0)
    d.update_task(
        task_id, status=TaskStatus.RUNNING, attempt=1, scheduled_at=d.now, started_at=d.now
    )
    d.command(
        StartTimer(
            run_id=d.original.id, kind=TimerKind.SLEEP, task_id=task_id, attempt=1, fire_at=fire_at
        )
    )
    d.record("task.started", task_id, 1, data={"until": fire_at})


def _start_signal(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    name = compiled.signal or task_id
    d.update_task(
        task_id, status=TaskStatus.RUNNING, attempt=1, scheduled_at=d.now, started_at=d.now
    )
    d.record("task.started", task_id, 1, data={"signal": name})
    buffered = d.signals.get(name)
    if buffered:
        payload = buffered.pop(0)
        if not buffered:
            del d.signals[name]
        complete_task(d, task_id, 1, payload)
    elif compiled.timeout_seconds is not None:
        fire_at = after(d.now, compiled.timeout_seconds)
        kind = TimerKind.SIGNAL_TIMEOUT
        d.command(
            StartTimer(run_id=d.original.id, kind=kind, task_id=task_id, attempt=1, fire_at=fire_at)
        )


_START: dict[str, Callable[[Draft, str, CompiledTask], None]] = {
    "handler": _start_dispatched,
    "http": _start_dispatched,
    "sleep": _start_sleep,
    "signal": _start_signal,
    "map": map_control.start_map,
    "workflow": child.start_child,
    "switch": branching.start_switch,
}


# --- attempts -----------------------------------------------------------------------


def _current_attempt(
    d: Draft, task_id: str | None, attempt: int, statuses: frozenset[TaskStatus]
) -> tuple[TaskState, CompiledTask] | None:
    """The task if the event is about its current, dispatched attempt; None if stale."""
    if d.status is not RunStatus.RUNNING or task_id is None:
        return None
    task, compiled = d.tasks.get(task_id), d.workflow.tasks.get(task_id)
    if task is None or compiled is None or task.attempt != attempt or attempt < 1:
        return None
    if task.status not in statuses or awaiting_backoff(task):
        return None
    return task, compiled


def _dispatched_attempt(
    d: Draft, task_id: str | None, attempt: int, statuses: frozenset[TaskStatus] = ACTIVE
) -> tuple[TaskState, CompiledTask] | None:
    found = _current_attempt(d, task_id, attempt, statuses)
    if found is None or found[1].type not in DISPATCHED_TYPES:
        return None
    return found


def _on_task_started(d: Draft, event: TaskStarted | TaskCompleted | TaskFailed) -> None:
    """The attempt began: its `task.started`, or the start a quick attempt's result carries."""
    found = _dispatched_attempt(d, event.task_id, event.attempt, frozenset({TaskStatus.SCHEDULED}))
    if found is None:
        return
    _, compiled = found
    disarm_dispatch_timeout(d, compiled, event.task_id, event.attempt)
    d.update_task(event.task_id, status=TaskStatus.RUNNING, started_at=event.started_at or d.now)
    if compiled.timeout_seconds is not None:
        d.command(
            StartTimer(
                run_id=d.original.id,
                kind=TimerKind.ATTEMPT_TIMEOUT,
                task_id=event.task_id,
                attempt=event.attempt,
                fire_at=after(d.now, compiled.timeout_seconds),
            )
        )
    heartbeat.arm(d, compiled, event.task_id, event.attempt)
    d.record("task.started", event.task_id, event.attempt, data={"worker": event.worker})


def _on_task_heartbeat(d: Draft, event: TaskHeartbeat) -> None:
    """Keep the running attempt's last heartbeat and move its heartbeat timer on."""
    found = _dispatched_attempt(d, event.task_id, event.attempt, frozenset({TaskStatus.RUNNING}))
    if found is None:
        return
    d.update_task(event.task_id, heartbeat=heartbeat.beat(event, d.now))
    heartbeat.arm(d, found[1], event.task_id, event.attempt)
    d.quiet = True


def _on_task_completed(d: Draft, event: TaskCompleted) -> None:
    found = _dispatched_attempt(d, event.task_id, event.attempt)
    if found is None:
        return
    _cancel_attempt_timers(d, *found)
    complete_task(d, event.task_id, event.attempt, event.output)
    _advance(d)


def _on_task_failed(d: Draft, event: TaskFailed) -> None:
    found = _dispatched_attempt(d, event.task_id, event.attempt)
    if found is None:
        return
    task, compiled = found
    _cancel_attempt_timers(d, task, compiled)
    data = {"error": msgspec.to_builtins(event.error)}
    d.record("task.failed", event.task_id, event.attempt, data=data)
    _attempt_failed(d, task, compiled, event.error, final_status=TaskStatus.FAILED)


def _attempt_failed(
    d: Draft,
    task: TaskState,
    compiled: CompiledTask,
    error: ErrorInfo,
    *,
    final_status: TaskStatus,
) -> None:
    """Retry after the backoff if the policy allows it, else end the task and the run."""
    try:
        policy = retry_policy(d, compiled)
    except DynamicValueInvalid as exc:
        policy, error = None, dynamic_value_error(exc)
    retry = None if policy is None else retry_of(policy, task.attempt, error, d.now)
    if retry is not None:
        d.update_task(
            task.task_id,
            status=TaskStatus.SCHEDULED,
            attempt=retry.attempt,
            error=error,
            scheduled_at=None,
            started_at=None,
        )
        d.command(retry.timer(d.original.id, task.task_id))
        d.record("task.retry_scheduled", task.task_id, retry.attempt, data=retry.history_data())
        return
    d.update_task(task.task_id, status=final_status, error=error, finished_at=d.now)
    fail_run(d, task.task_id, error)


def _cancel_attempt_timers(d: Draft, task: TaskState, compiled: CompiledTask) -> None:
    """A result ends the attempt: drop its timers (a start already dropped the
    schedule-to-start one, so only an attempt that never reported a start has it)."""
    kind, task_id, attempt = TimerKind.ATTEMPT_TIMEOUT, task.task_id, task.attempt
    d.command(CancelTimer(run_id=d.original.id, kind=kind, task_id=task_id, attempt=attempt))
    if task.status is TaskStatus.RUNNING:
        heartbeat.disarm(d, compiled, task_id, attempt)
    if task.status is TaskStatus.SCHEDULED:
        disarm_dispatch_timeout(d, compiled, task_id, attempt)


def _on_dispatch_lost(d: Draft, event: DispatchLost) -> None:
    found = _dispatched_attempt(d, event.task_id, event.attempt)
    if found is None:
        return
    d.update_task(event.task_id, status=TaskStatus.SCHEDULED, started_at=None)
    _dispatch(d, event.task_id, found[1], again=True)


# --- timers and signals -------------------------------------------------------------


def _on_timer_fired(d: Draft, event: TimerFired) -> None:
    _TIMERS[event.kind](d, event)


def _retry_due(d: Draft, event: TimerFired) -> None:
    if d.status is not RunStatus.RUNNING or event.task_id is None:
        return
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    if task is None or compiled is None or compiled.type not in DISPATCHED_TYPES:
        return
    if not awaiting_backoff(task) or task.attempt != event.attempt:
        return
    if d.paused:
        control.hold_retry(d, event.task_id)
        return
    d.update_task(event.task_id, scheduled_at=d.now)
    _dispatch(d, event.task_id, compiled)


def _attempt_timed_out(d: Draft, event: TimerFired) -> None:
    """Its start-to-close or heartbeat timer fired: the attempt fails and is abandoned."""
    found = _dispatched_attempt(d, event.task_id, event.attempt)
    if found is None:
        return
    task, compiled = found
    error = heartbeat.timeout_error(event.kind, compiled, task.attempt)
    data = {"error": msgspec.to_builtins(error)}
    d.record("task.timed_out", task.task_id, task.attempt, data=data)
    heartbeat.abandon(d, compiled, task.task_id, task.attempt, fired=event.kind)
    _attempt_failed(d, task, compiled, error, final_status=TaskStatus.TIMED_OUT)


def _run_timed_out(d: Draft, event: TimerFired) -> None:
    if d.status.is_terminal:
        return
    seconds = d.workflow.timeout_seconds or 0.0
    message = f"the run exceeded its timeout of {seconds:g}s"
    error = ErrorInfo(type="RunTimedOut", message=message, retryable=False)
    finish(
        d, RunStatus.TIMED_OUT, history="run.timed_out", error=error, fired=TimerKind.RUN_TIMEOUT
    )


def _sleep_done(d: Draft, event: TimerFired) -> None:
    found = _current_attempt(d, event.task_id, event.attempt, frozenset({TaskStatus.RUNNING}))
    if found is None or found[1].type != "sleep":
        return
    complete_task(d, found[0].task_id, event.attempt, None)
    _advance(d)


def _signal_timed_out(d: Draft, event: TimerFired) -> None:
    found = _current_attempt(d, event.task_id, event.attempt, frozenset({TaskStatus.RUNNING}))
    if found is None or found[1].type != "signal":
        return
    task, compiled = found
    message = f"signal '{compiled.signal}' did not arrive within {_signal_timeout(d, compiled)}"
    error = ErrorInfo(type="TimeoutError", message=message, retryable=False)
    d.update_task(task.task_id, status=TaskStatus.TIMED_OUT, error=error, finished_at=d.now)
    data = {"error": msgspec.to_builtins(error)}
    d.record("task.timed_out", task.task_id, task.attempt, data=data)
    fail_run(d, task.task_id, error)


def _signal_timeout(d: Draft, compiled: CompiledTask) -> str:
    seconds = compiled.timeout_seconds
    if seconds is None and compiled.dynamic is not None and compiled.dynamic.timeout is not None:
        try:
            seconds = dynamic.seconds(compiled.dynamic.timeout, "timeout", d.context())
        except DynamicValueInvalid:
            return "its timeout"
    return f"{seconds or 0.0:g}s"


_TIMERS: dict[TimerKind, Callable[[Draft, TimerFired], None]] = {
    TimerKind.RETRY: _retry_due,
    TimerKind.ATTEMPT_TIMEOUT: _attempt_timed_out,
    TimerKind.RUN_TIMEOUT: _run_timed_out,
    TimerKind.SLEEP: _sleep_done,
    TimerKind.SIGNAL_TIMEOUT: _signal_timed_out,
    TimerKind.MAP_TIMEOUT: map_control.on_map_timed_out,
    TimerKind.DISPATCH_TIMEOUT: lambda d, e: redispatch.on_task_due(d, e, _attempt_failed),
    TimerKind.HEARTBEAT_TIMEOUT: _attempt_timed_out,
}


def _on_signal_received(d: Draft, event: SignalReceived) -> None:
    if d.status.is_terminal:
        return
    waiting = _task_waiting_for(d, event.name)
    if waiting is None:
        d.signals.setdefault(event.name, []).append(event.payload)
        d.record("signal.received", data={"name": event.name, "buffered": True})
        return
    d.record("signal.received", waiting.id, 1, data={"name": event.name})
    if waiting.signal_may_time_out:
        kind = TimerKind.SIGNAL_TIMEOUT
        d.command(CancelTimer(run_id=d.original.id, kind=kind, task_id=waiting.id, attempt=1))
    complete_task(d, waiting.id, 1, event.payload)
    _advance(d)


def _task_waiting_for(d: Draft, name: str) -> CompiledTask | None:
    if d.status is not RunStatus.RUNNING:
        return None
    for task_id in d.workflow.order:
        compiled, task = d.workflow.tasks.get(task_id), d.tasks.get(task_id)
        if compiled is None or task is None or compiled.type != "signal":
            continue
        if compiled.signal == name and task.status is TaskStatus.RUNNING:
            return compiled
    return None


_APPLY: dict[type, Callable[[Draft, Any], None]] = {
    RunStarted: _on_run_started,
    TaskStarted: _on_task_started,
    TaskHeartbeat: _on_task_heartbeat,
    TaskCompleted: with_carried_start(_on_task_started, _on_task_completed),
    TaskFailed: with_carried_start(_on_task_started, _on_task_failed),
    TimerFired: _on_timer_fired,
    SignalReceived: _on_signal_received,
    CancelRequested: _on_cancel_requested,
    DispatchLost: _on_dispatch_lost,
    ChildRunStarted: lambda d, e: child.on_child_started(d, e, _advance),
    ChildRunFinished: lambda d, e: child.on_child_finished(d, e, _advance),
    RetryRequested: lambda d, e: control.on_retry_requested(d, e, _advance),
    PauseRequested: control.on_pause_requested,
    ResumeRequested: lambda d, e: control.on_resume_requested(d, e, _advance),
}
