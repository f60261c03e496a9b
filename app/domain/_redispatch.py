"""Schedule-to-start: an attempt dispatched but not started in time is sent again.

The start-to-close timer is armed only when a worker reports the start, so a dispatch
that a broker lost (a Kafka-protocol broker on memory storage, restarted) would leave its
task `scheduled` for good. With a schedule-to-start limit, each dispatch also starts a
`DISPATCH_TIMEOUT` timer; a start or a result drops it. When it fires on an attempt that
is still current and unstarted, the same attempt is dispatched again: a result changes
state once, so a copy that was merely slow costs a duplicate execution, never a second
outcome. Each check waits twice as long as the one before (capped), so a long backlog
that is only slow is not flooded with copies.

The re-sends are bounded: when the check after the `MAX_RESENDS`-th re-send still finds
the attempt unstarted, it fails with `ScheduleToStartTimeout` and follows its task's
retry policy (a new attempt after the backoff, or the task times out), so an attempt that
no worker starts (no worker for its queue, or its handler is missing) ends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import msgspec

from treadle.domain._run_draft import (
    DISPATCHED_TYPES,
    Draft,
    arm_dispatch_timeout,
    awaiting_backoff,
    dispatch_command,
)
from treadle.domain._task_rules import CompiledTask
from treadle.domain.events import TimerFired
from treadle.domain.state import ErrorInfo, MapItem, RunStatus, TaskState, TaskStatus

MAX_WAIT_SECONDS = 3600.0
"""The longest wait between two checks (unless the task's own limit is longer)."""
MAX_RESENDS = 3
"""Re-sends of one unstarted attempt before it fails with `ScheduleToStartTimeout`: with
the doubling waits it gives up 15 limits after its dispatch (at L, 3L, 7L it is re-sent)."""
SCHEDULE_TO_START_TIMEOUT = "ScheduleToStartTimeout"


class TaskAttemptFailed(Protocol):
    """The decider's `_attempt_failed`: retry by the policy, or end the task."""

    def __call__(
        self,
        d: Draft,
        task: TaskState,
        compiled: CompiledTask,
        error: ErrorInfo,
        *,
        final_status: TaskStatus,
    ) -> None: ...


class ItemAttemptFailed(Protocol):
    """The map's `_attempt_failed`: retry the item by the policy, or end it."""

    def __call__(
        self,
        d: Draft,
        item: MapItem,
        template: CompiledTask,
        error: ErrorInfo,
        *,
        final_status: TaskStatus,
        advance: Callable[[Draft], None],
    ) -> None: ...


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


def timed_out_error(attempt: int, resends: int, waited: float) -> ErrorInfo:
    """The failure of an attempt that no worker started despite its re-sends."""
    message = (
        f"attempt {attempt} was not started by any worker within {waited:g}s"
        f" (sent {resends + 1} times)"
    )
    return ErrorInfo(type=SCHEDULE_TO_START_TIMEOUT, message=message, retryable=True)


def on_task_due(d: Draft, event: TimerFired, failed: TaskAttemptFailed) -> None:
    """A task's attempt is still unstarted after its wait: send the same attempt again,
    or, past `MAX_RESENDS`, fail it by its retry policy."""
    found = _unstarted_task(d, event)
    if found is None:
        return
    task, compiled, limit = found
    waited, wait = next_wait(limit, task.scheduled_at, d.now)
    if task.resends >= MAX_RESENDS:
        error = timed_out_error(task.attempt, task.resends, waited)
        data = {"error": msgspec.to_builtins(error)}
        d.record("task.timed_out", task.task_id, task.attempt, data=data)
        failed(d, task, compiled, error, final_status=TaskStatus.TIMED_OUT)
        return
    d.update_task(task.task_id, resends=task.resends + 1)
    d.command(
        dispatch_command(
            d,
            task.task_id,
            compiled,
            attempt=task.attempt,
            input=task.input,
            delivery=task.delivery,
        )
    )
    arm_dispatch_timeout(d, compiled, task.task_id, task.attempt, seconds=wait)
    data = {"queue": compiled.queue, "waited_seconds": waited, "next_check_seconds": wait}
    d.record("task.redispatched", task.task_id, task.attempt, data=data)


def on_item_due(
    d: Draft, event: TimerFired, advance: Callable[[Draft], None], failed: ItemAttemptFailed
) -> None:
    """The same for one item of a `map` task (its timer carries the item index)."""
    found = _unstarted_item(d, event)
    if found is None:
        return
    item, template, limit = found
    waited, wait = next_wait(limit, item.scheduled_at, d.now)
    if item.resends >= MAX_RESENDS:
        error = timed_out_error(item.attempt, item.resends, waited)
        data = {"item": item.index, "error": msgspec.to_builtins(error)}
        d.record("item.timed_out", item.task_id, item.attempt, data=data)
        failed(d, item, template, error, final_status=TaskStatus.TIMED_OUT, advance=advance)
        return
    d.items[(item.task_id, item.index)] = msgspec.structs.replace(item, resends=item.resends + 1)
    d.command(
        dispatch_command(
            d,
            item.task_id,
            template,
            attempt=item.attempt,
            input=item.input,
            item=item.index,
            delivery=item.delivery,
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
