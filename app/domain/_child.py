"""The `workflow` task type in the decider: a child run whose output is the task's output.

The task starts by asking for the child (`StartChildRun`); the orchestrator starts it
with an idempotency key made of the parent's run, task and attempt and reports its id
(`ChildRunStarted`). The child's end reaches the parent as `ChildRunFinished`. When the
parent's task ends first (the parent was cancelled, failed or timed out), the task asks
for the child to be cancelled (`CancelChildRun`, emitted by `cancel_task_timers`); a
child whose id arrives only after that is cancelled on arrival.
"""

from __future__ import annotations

from collections.abc import Callable

from treadle.domain._run_draft import Draft, complete_task, expression_error, fail_task
from treadle.domain._task_rules import CompiledTask
from treadle.domain.errors import ExpressionError
from treadle.domain.events import CancelChildRun, ChildRunFinished, ChildRunStarted, StartChildRun
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

Advance = Callable[[Draft], None]

_FAILURE_TYPES = {
    RunStatus.FAILED: "ChildRunFailed",
    RunStatus.CANCELLED: "ChildRunCancelled",
    RunStatus.TIMED_OUT: "ChildRunTimedOut",
}


def start_child(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """Render the child's input and ask the orchestrator to start it."""
    if compiled.child_workflow is None:  # compile guarantees it; kept for totality
        error = ErrorInfo(type="ChildInvalid", message="no workflow named", retryable=False)
        fail_task(d, task_id, error)
        return
    try:
        rendered = compiled.input.render(d.context())
    except ExpressionError as exc:
        fail_task(d, task_id, expression_error(exc))
        return
    d.update_task(
        task_id,
        status=TaskStatus.RUNNING,
        attempt=1,
        input=rendered,
        scheduled_at=d.now,
        started_at=d.now,
    )
    d.command(
        StartChildRun(
            run_id=d.original.id,
            task_id=task_id,
            attempt=1,
            workflow=compiled.child_workflow,
            version=compiled.child_version,
            input=rendered,
        )
    )
    data = {"workflow": compiled.child_workflow, "version": compiled.child_version}
    d.record("task.started", task_id, 1, data=data)


def on_child_started(d: Draft, event: ChildRunStarted, advance: Advance) -> None:
    """Remember the child's id; cancel the child if its task has already ended."""
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    if task is None or compiled is None or compiled.type != "workflow":
        return
    if task.attempt != event.attempt or task.child_run_id is not None:
        return
    data = {"child_run_id": event.child_run_id}
    if d.status is RunStatus.RUNNING and task.status is TaskStatus.RUNNING:
        d.update_task(event.task_id, child_run_id=event.child_run_id)
        d.record("child.started", event.task_id, event.attempt, data=data)
        return
    if task.status is TaskStatus.COMPLETED:
        return
    # The task ended while the child was being started: nobody waits for it any more.
    d.update_task(event.task_id, child_run_id=event.child_run_id)
    d.record("child.cancel_requested", event.task_id, event.attempt, data=data)
    reason = f"its parent run's task '{event.task_id}' had already ended"
    d.command(
        CancelChildRun(
            run_id=d.original.id,
            task_id=event.task_id,
            child_run_id=event.child_run_id,
            reason=reason,
        )
    )


def on_child_finished(d: Draft, event: ChildRunFinished, advance: Advance) -> None:
    """The child's output completes the task; any other end fails it."""
    if d.status is not RunStatus.RUNNING:
        return
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    if task is None or compiled is None or compiled.type != "workflow":
        return
    if task.status is not TaskStatus.RUNNING:
        return
    known, reported = task.child_run_id, event.child_run_id
    if known is not None and reported is not None and known != reported:
        return
    if reported is not None and known is None:
        d.update_task(event.task_id, child_run_id=reported)
    if event.status is RunStatus.COMPLETED:
        complete_task(d, event.task_id, task.attempt, event.output)
        advance(d)
        return
    fail_task(d, event.task_id, _child_error(event))


def _child_error(event: ChildRunFinished) -> ErrorInfo:
    kind = _FAILURE_TYPES.get(event.status, "ChildRunFailed")
    child = event.child_run_id or "(not started)"
    message = f"child run {child} ended {event.status.value}"
    if event.error is not None:
        message = f"{message}: {event.error.type}: {event.error.message}"
    return ErrorInfo(type=kind, message=message, retryable=False)
