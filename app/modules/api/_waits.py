"""What each unfinished task of a run waits for (`TaskBody.waiting`), for `GET /v1/runs/{id}`.

The run state says a `signal` or `sleep` task is `running` and a task in its retry backoff
is `scheduled`, like any task on its way; the run's durable timers say until when, and the
definition names the signal. Nothing here decides: it only reads what the decider left.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from treadle.api_types import WaitBody
from treadle.domain.events import TimerKind
from treadle.domain.state import RunState, TaskState, TaskStatus
from treadle.ports import RunStore, WorkflowStore

__all__ = ["waits_of"]

_TimerKey = tuple[TimerKind, str | None, int]


async def waits_of(run: RunState, runs: RunStore, workflows: WorkflowStore) -> dict[str, WaitBody]:
    """The wait of each task of `run` that waits for something, by task id."""
    waiting = [t for t in run.tasks.values() if _may_wait(t, paused=run.paused)]
    if run.status.is_terminal or not waiting:
        return {}  # no read for a finished run, or one whose tasks all just work
    timers: dict[_TimerKey, datetime] = {
        (t.kind, t.task_id, t.attempt): t.fire_at
        for t in await runs.list_timers(run.id)
        if t.item is None
    }
    names = await _signal_names(run, workflows) if _has_signal(waiting) else {}
    waits: dict[str, WaitBody] = {}
    for task in waiting:
        wait = _wait_of(task, timers, names, paused=run.paused)
        if wait is not None:
            waits[task.task_id] = wait
    return waits


def _may_wait(task: TaskState, *, paused: bool) -> bool:
    if task.status is TaskStatus.RUNNING:
        return task.type in ("signal", "sleep")
    if task.status is TaskStatus.SCHEDULED:
        return task.attempt > 1  # a retry's backoff (a first attempt waits for a worker)
    return task.status is TaskStatus.PENDING and paused and task.attempt > 0


def _has_signal(tasks: list[TaskState]) -> bool:
    return any(t.type == "signal" for t in tasks)


def _wait_of(
    task: TaskState,
    timers: dict[_TimerKey, datetime],
    names: dict[str, str],
    *,
    paused: bool,
) -> WaitBody | None:
    def until(kind: TimerKind) -> datetime | None:
        return timers.get((kind, task.task_id, task.attempt))

    if task.status is TaskStatus.PENDING:
        return WaitBody(reason="resume") if paused else None
    if task.type == "signal" and task.status is TaskStatus.RUNNING:
        name = names.get(task.task_id, task.task_id)
        return WaitBody(reason="signal", signal=name, until=until(TimerKind.SIGNAL_TIMEOUT))
    if task.type == "sleep" and task.status is TaskStatus.RUNNING:
        return WaitBody(reason="sleep", until=until(TimerKind.SLEEP))
    due = until(TimerKind.RETRY)
    # Without its timer the backoff is over: the attempt is dispatched, waiting for a worker.
    return WaitBody(reason="retry", until=due) if due is not None else None


async def _signal_names(run: RunState, workflows: WorkflowStore) -> dict[str, str]:
    """Each `signal` task's signal name, from the run's pinned definition (default: its id)."""
    stored = await workflows.get_workflow(run.workflow, run.version)
    tasks: Any = stored.definition.get("tasks")
    names: dict[str, str] = {}
    for task_id, task in (tasks if isinstance(tasks, dict) else {}).items():
        signal = task.get("signal") if isinstance(task, dict) else None
        if isinstance(signal, str):
            names[str(task_id)] = signal
    return names
