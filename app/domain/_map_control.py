"""A `map` task under run control: retry from failure, and the map's own timeout.

Retry. A map that failed, timed out or was cancelled keeps its items. When a retry
restarts it, its completed items keep their outputs and every other item goes back to
`pending` with its attempt count kept (so the next dispatch is a new attempt number and a
late result of an old one stays stale); the map then runs those items again under its
concurrency cap, with the inputs rendered the first time (`items` is not evaluated again).
The map task's own attempt goes up by one, which makes the old attempt's map timer stale.

Timeout. A map's `timeout` is a deadline over the whole map (all its items together), not
per item: the template's own `timeout` bounds each item's attempts. It runs on wall-clock
time, paused or not. When it fires the unfinished items are cancelled and the task times
out, which fails the run.
"""

from __future__ import annotations

import msgspec

from treadle.domain import _map as map_
from treadle.domain._run_draft import Draft, complete_task, fail_run, fail_task
from treadle.domain._task_rules import CompiledTask
from treadle.domain.events import CancelAttempts, CancelMapItems, TimerFired
from treadle.domain.state import ErrorInfo, MapItem, RunStatus, TaskStatus


def start_map(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """Start a map, or restart one that a retry reset (it still has its progress)."""
    if d.tasks[task_id].progress is None:
        map_.start_map(d, task_id, compiled)
    else:
        _restart(d, task_id, compiled)


def _restart(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """Run the items that did not complete again; completed items keep their outputs."""
    task = d.tasks[task_id]
    progress, template = task.progress, compiled.map_task
    if progress is None or template is None:  # `start_map` checked; compile guarantees
        return
    found = [d.items.get((task_id, index)) for index in range(progress.total)]
    items = [item for item in found if item is not None]
    if len(items) != progress.total:  # `items_wanted` loads them all; kept for totality
        message = "not every item could be read"
        fail_task(d, task_id, ErrorInfo(type="MapItemsMissing", message=message, retryable=False))
        return
    rerun = [item for item in items if item.status is not TaskStatus.COMPLETED]
    for item in rerun:
        d.items[(task_id, item.index)] = _reset(item)
    attempt = task.attempt + 1
    progress = msgspec.structs.replace(
        progress, next_index=0, in_flight=0, completed=progress.total - len(rerun), failed=0
    )
    d.update_task(
        task_id,
        status=TaskStatus.RUNNING,
        attempt=attempt,
        scheduled_at=d.now,
        started_at=d.now,
        progress=progress,
    )
    data = {"items": progress.total, "concurrency": progress.concurrency, "rerun": len(rerun)}
    d.record("task.started", task_id, attempt, data=data)
    if not rerun:  # every item had completed (the map ended another way); for totality
        complete_task(d, task_id, attempt, [item.output for item in items])
        return
    map_.arm_timeout(d, task_id, compiled)
    map_.fill(d, task_id, template)


def _reset(item: MapItem) -> MapItem:
    return msgspec.structs.replace(
        item,
        status=TaskStatus.PENDING,
        output=None,
        error=None,
        scheduled_at=None,
        started_at=None,
        finished_at=None,
    )


def on_map_timed_out(d: Draft, event: TimerFired) -> None:
    """The map's deadline passed: cancel the unfinished items, time the task out."""
    if d.status is not RunStatus.RUNNING or event.task_id is None:
        return
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    if task is None or compiled is None or compiled.map_task is None:
        return
    if task.status is not TaskStatus.RUNNING or task.attempt != event.attempt:
        return
    progress = task.progress
    done = f"{progress.finished} of {progress.total}" if progress is not None else "no"
    seconds = compiled.timeout_seconds or 0.0
    message = f"the map exceeded its timeout of {seconds:g}s with {done} items finished"
    error = ErrorInfo(type="TimeoutError", message=message, retryable=False)
    d.command(CancelMapItems(run_id=d.original.id, task_id=event.task_id))
    if progress is not None and progress.in_flight > 0:
        # Workers running its items stop them (one message for the whole map).
        reason = f"map task '{event.task_id}' timed out"
        d.command(CancelAttempts(run_id=d.original.id, task_id=event.task_id, reason=reason))
    d.update_task(event.task_id, status=TaskStatus.TIMED_OUT, error=error, finished_at=d.now)
    data = {"error": msgspec.to_builtins(error)}
    d.record("task.timed_out", event.task_id, task.attempt, data=data)
    fail_run(d, event.task_id, error)
