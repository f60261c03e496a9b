"""Schedule-to-start: an attempt dispatched but not started in time is sent again.

The start-to-close timer is armed only when a worker reports the start, so a dispatch
that a broker lost (a Kafka-protocol broker on memory storage, restarted) would leave its
task `scheduled` for good. With a schedule-to-start limit, each dispatch also starts a
`DISPATCH_TIMEOUT` timer; a start or a result drops it. When it fires on an attempt that
is still current and unstarted, the same attempt is dispatched again: a result changes
state once, so a copy that was merely slow costs a duplicate execution, never a second
outcome. Each check waits twice as long as the one before (capped), so a long backlog
that is only slow is not flooded with copies.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from app.domain._run_draft import (
    DISPATCHED_TYPES,
    Draft,
    arm_dispatch_timeout,
    awaiting_backoff,
    dispatch_command,
)
from app.domain._task_rules import CompiledTask
from app.domain.events import TimerFired
from app.domain.state import MapItem, RunStatus, TaskState, TaskStatus

MAX_WAIT_SECONDS = 3600.0
"""The longest wait between two checks (unless the task's own limit is longer)."""


def next_wait(limit: float, scheduled_at: datetime | None, now: datetime) -> tuple[float, float]:
    """Seconds the attempt has waited since its dispatch, and the wait before the next check.

    The total wait doubles with each check (limit, then 2x, 4x... since the dispatch), so
    the next wait is what has been waited plus the limit. A clock stepped back (or a
    missing `scheduled_at`) counts as having waited the limit, never less.
    """
    waited = limit
    if scheduled_at is not None:
        waited = max((now - scheduled_at).total_seconds(), limit)
    return waited, min(waited + limit, max(limit, MAX_WAIT_SECONDS))


def on_task_due(d: Draft, event: TimerFired) -> None:
    """A task's attempt is still unstarted after its wait: send the same attempt again."""
    found = _unstarted_task(d, event)
    if found is None:
        return
    task, compiled, limit = found
    waited, wait = next_wait(limit, task.scheduled_at, d.now)
    d.command(dispatch_command(d, task.task_id, compiled, attempt=task.attempt, input=task.input))
    arm_dispatch_timeout(d, compiled, task.task_id, task.attempt, seconds=wait)
    data = {"queue": compiled.queue, "waited_seconds": waited, "next_check_seconds": wait}
    d.record("task.redispatched", task.task_id, task.attempt, data=data)


def on_item_due(d: Draft, event: TimerFired, advance: Callable[[Draft], None]) -> None:
    """The same for one item of a `map` task (its timer carries the item index)."""
    found = _unstarted_item(d, event)
    if found is None:
        return
    item, template, limit = found
    waited, wait = next_wait(limit, item.scheduled_at, d.now)
    d.command(
        dispatch_command(
            d, item.task_id, template, attempt=item.attempt, input=item.input, item=item.index
        )
    )
    arm_dispatch_timeout(d, template, item.task_id, item.attempt, item=item.index, seconds=wait)
    data = {
        "item": item.index,
        "queue": template.queue,
        "waited_seconds": waited,
        "next_check_seconds": wait,
    }
    d.record("item.redispatched", item.task_id, item.attempt, data=data)


def _unstarted_task(d: Draft, event: TimerFired) -> tuple[TaskState, CompiledTask, float] | None:
    """The task, if the timer is about its current attempt, dispatched and not started."""
    if d.status is not RunStatus.RUNNING or event.task_id is None:
        return None
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    if task is None or compiled is None or compiled.type not in DISPATCHED_TYPES:
        return None
    if task.attempt != event.attempt or task.status is not TaskStatus.SCHEDULED:
        return None
    limit = compiled.schedule_to_start_seconds
    if awaiting_backoff(task) or limit is None:  # None: the limit was turned off since
        return None
    return task, compiled, limit


def _unstarted_item(d: Draft, event: TimerFired) -> tuple[MapItem, CompiledTask, float] | None:
    """The item, if the timer is about its current attempt, dispatched and not started."""
    if d.status is not RunStatus.RUNNING or event.task_id is None or event.item is None:
        return None
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    item = d.items.get((event.task_id, event.item))
    if task is None or task.status is not TaskStatus.RUNNING or item is None:
        return None
    template = compiled.map_task if compiled is not None else None
    if template is None or template.schedule_to_start_seconds is None:
        return None
    if item.attempt != event.attempt or item.status is not TaskStatus.SCHEDULED:
        return None
    if item.scheduled_at is None:  # waiting out a retry's backoff: nothing was sent
        return None
    return item, template, template.schedule_to_start_seconds
