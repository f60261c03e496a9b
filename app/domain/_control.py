"""Run control in the decider: retry from failure, pause and resume.

A paused run records every result but starts nothing new: `advance` stops before the
first pending task while `Draft.paused` holds, and a retry whose backoff ends while paused
goes back to `pending` (keeping its attempt count), so the normal advance on resume
dispatches it. Retry from failure puts the tasks that failed, timed out or were cancelled
or skipped because of them back to `pending` with their attempt counts kept, so the next
attempt number continues and a late result of an old attempt stays stale.
"""

from __future__ import annotations

from collections.abc import Callable

from treadle.domain import _map as map_
from treadle.domain._run_draft import Draft, after
from treadle.domain.events import (
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    StartTimer,
    TimerKind,
)
from treadle.domain.state import RunStatus, TaskStatus

Advance = Callable[[Draft], None]

RETRYABLE_RUN = frozenset({RunStatus.FAILED, RunStatus.TIMED_OUT})
_RESET = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED})


def on_retry_requested(d: Draft, event: RetryRequested, advance: Advance) -> None:
    """A failed or timed-out run runs again from the tasks that did not complete."""
    if d.status not in RETRYABLE_RUN:
        return
    reset = _tasks_to_reset(d)
    for task_id in reset:
        d.update_task(
            task_id,
            status=TaskStatus.PENDING,
            output=None,
            error=None,
            scheduled_at=None,
            started_at=None,
            finished_at=None,
        )
    d.update_run(status=RunStatus.RUNNING, output=None, error=None, finished_at=None, paused=False)
    d.record("run.retried", data={"tasks": reset})
    if d.workflow.timeout_seconds is not None:
        # The old deadline passed or was dropped when the run ended: the retry gets a fresh one.
        fire_at = after(d.now, d.workflow.timeout_seconds)
        d.command(StartTimer(run_id=d.original.id, kind=TimerKind.RUN_TIMEOUT, fire_at=fire_at))
    advance(d)


def _tasks_to_reset(d: Draft) -> list[str]:
    """Failed, timed-out and cancelled tasks, and those skipped because a dependency was not
    completed (a task skipped by its `when` had every dependency completed, so it stays)."""
    reset: list[str] = []
    for task_id in d.workflow.order:
        task, compiled = d.tasks.get(task_id), d.workflow.tasks.get(task_id)
        if task is None or compiled is None:
            continue
        if task.status in _RESET:
            reset.append(task_id)
        elif task.status is TaskStatus.SKIPPED:
            deps = [d.original.tasks.get(dep) for dep in compiled.deps]
            if any(dep is None or dep.status is not TaskStatus.COMPLETED for dep in deps):
                reset.append(task_id)
    return reset


def on_pause_requested(d: Draft, event: PauseRequested) -> None:
    """Stop starting tasks; what is in flight finishes and is recorded."""
    if d.status.is_terminal or d.paused:
        return
    d.update_run(paused=True)
    d.record("run.paused")


def on_resume_requested(d: Draft, event: ResumeRequested, advance: Advance) -> None:
    """Start everything that became ready while the run was paused."""
    if d.status.is_terminal or not d.paused:
        return
    d.update_run(paused=False)
    d.record("run.resumed")
    map_.refill(d)  # maps left slots free while paused
    advance(d)


def hold_retry(d: Draft, task_id: str) -> None:
    """A retry's backoff ended while paused: wait as `pending` for the resume to start it."""
    task = d.tasks[task_id]
    d.update_task(task_id, status=TaskStatus.PENDING, attempt=task.attempt - 1)
    d.record("task.retry_held", task_id, task.attempt, data={"reason": "the run is paused"})
