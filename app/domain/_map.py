"""The `map` task type in the decider: one template task fanned out over a list.

Storage shape. A map task's `TaskState` carries only a `MapProgress` aggregate (total,
lowest index that may still be pending, in flight, completed, failed). Each item is a
`MapItem` stored in its own row; a decision sees only the items `items_wanted` names
(see `_map_query`): the item an event is about, and the next pending item of that map
(to refill the freed slot). When the event may finish the map (at most one item left),
every item of that map is loaded, once, so the output (the list of item outputs in input
order) is assembled in the same decision.

Pause. While the run is paused no item is dispatched: in-flight items finish and are
recorded, and an item whose retry comes due waits as `pending` (`_hold`); the resume
refills every running map up to its concurrency (`refill`). Retry from failure and the
map's own timeout are in `_map_control`.

Items are created (with their rendered input) when the map starts, dispatched in input
order while fewer than `concurrency` are in flight, and retried one by one with the
template task's retry policy and timeout; their timers carry the item index. With
`on_failure: fail_fast` the first item that fails for good fails the map (the others are
marked cancelled); with `complete_all` every item runs and the map fails at the end if
any failed, its output still listing every output (null for the failed ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from treadle.domain import _heartbeat as heartbeat
from treadle.domain import _redispatch as redispatch
from treadle.domain._retry import retry_of
from treadle.domain._run_draft import (
    Draft,
    after,
    arm_dispatch_timeout,
    complete_task,
    disarm_dispatch_timeout,
    dispatch_command,
    dynamic_value_error,
    expression_error,
    fail_run,
    fail_task,
    retry_policy,
    with_carried_start,
)
from treadle.domain._task_rules import CompiledTask
from treadle.domain.errors import DynamicValueInvalid, ExpressionError
from treadle.domain.events import (
    CancelAttempts,
    CancelMapItems,
    CancelTimer,
    DispatchLost,
    Event,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.expressions import METER
from treadle.domain.state import (
    ErrorInfo,
    MapItem,
    MapProgress,
    RunStatus,
    TaskStatus,
)

DEFAULT_CONCURRENCY = 100
"""Items in flight at once when a map sets no `concurrency` (bounds one decision's work)."""
# The longest list is `limits.max_map_items`, carried by the compiled workflow.
MAX_ITEMS_BYTES = 16 * 1024 * 1024
"""The cap on a map's list, as JSON: the list is stored row by row, but bounded all the same."""

_ACTIVE = frozenset({TaskStatus.SCHEDULED, TaskStatus.RUNNING})
Advance = Callable[[Draft], None]
ItemHandler = Callable[[Draft, Any, Advance], None]


# --- starting a map -------------------------------------------------------------------


def start_map(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """Evaluate the list, create one pending item per element, dispatch the first ones."""
    template = compiled.map_task
    if template is None or compiled.items is None:  # compile guarantees both; for totality
        fail_task(d, task_id, _error("MapInvalid", f"map task '{task_id}' has no template"))
        return
    context = d.context()
    try:
        values = compiled.items.render(context)
    except ExpressionError as exc:
        fail_task(d, task_id, expression_error(exc))
        return
    problem = _list_problem(values, d.workflow.limits.max_map_items)
    if problem is not None:
        fail_task(d, task_id, problem)
        return
    inputs = _item_inputs(d, task_id, template, context, values)
    if inputs is None:
        return
    progress = MapProgress(
        total=len(inputs), concurrency=compiled.concurrency or DEFAULT_CONCURRENCY
    )
    d.update_task(
        task_id,
        status=TaskStatus.RUNNING,
        attempt=1,
        scheduled_at=d.now,
        started_at=d.now,
        progress=progress,
    )
    for index, value in enumerate(inputs):
        d.items[(task_id, index)] = MapItem(task_id=task_id, index=index, input=value)
    data = {"items": progress.total, "concurrency": progress.concurrency}
    d.record("task.started", task_id, 1, data=data)
    if progress.total == 0:
        complete_task(d, task_id, 1, [])
        return
    arm_timeout(d, task_id, compiled)
    fill(d, task_id, template)


def arm_timeout(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """The map's own `timeout` bounds all its items together (`MAP_TIMEOUT`)."""
    if compiled.timeout_seconds is None:
        return
    d.command(
        StartTimer(
            run_id=d.original.id,
            kind=TimerKind.MAP_TIMEOUT,
            task_id=task_id,
            attempt=d.tasks[task_id].attempt,
            fire_at=after(d.now, compiled.timeout_seconds),
        )
    )


def disarm_timeout(d: Draft, task_id: str) -> None:
    compiled = d.workflow.tasks.get(task_id)
    if compiled is None or compiled.timeout_seconds is None:
        return
    attempt = d.tasks[task_id].attempt
    kind = TimerKind.MAP_TIMEOUT
    d.command(CancelTimer(run_id=d.original.id, kind=kind, task_id=task_id, attempt=attempt))


def _list_problem(values: Any, max_items: int) -> ErrorInfo | None:
    if not isinstance(values, list):
        got = "null" if values is None else type(values).__name__
        return _error("MapItemsInvalid", f"items must evaluate to a list, got {got}")
    if len(values) > max_items:
        message = (
            f"{len(values)} items is more than the limit of {max_items} (limits.max_map_items)"
        )
        return _error("MapTooLarge", message)
    size = len(msgspec.json.encode(values))
    if size > MAX_ITEMS_BYTES:
        message = f"the items take {size} bytes as JSON, more than {MAX_ITEMS_BYTES}"
        return _error("MapTooLarge", message)
    return None


def _item_inputs(
    d: Draft, task_id: str, template: CompiledTask, context: dict[str, Any], values: list[Any]
) -> list[Any] | None:
    """Each item's rendered input (`item` and `index` in scope); None if one failed."""
    source = template.request if template.type == "http" else template.input
    if source is None:
        return [None] * len(values)
    inputs = []
    # Each item's render has its own budget (limits.max_expression_cost) but not the
    # decision's: a fan-out's size is bounded by limits.max_map_items instead.
    scope = {key: item for key, item in context.items() if key is not METER}
    for index, value in enumerate(values):
        try:
            inputs.append(source.render({**scope, "item": value, "index": index}))
        except ExpressionError as exc:
            error = expression_error(exc)
            message = f"item {index}: {error.message}"
            fail_task(d, task_id, msgspec.structs.replace(error, message=message))
            return None
    return inputs


def fill(d: Draft, task_id: str, template: CompiledTask) -> None:
    """Dispatch pending items, in input order, while the concurrency cap allows.

    `next_index` is the lowest index that may still be pending. The store loads the first
    pending items from there on (`ItemQuery.pending`), so the loaded pending items past it
    are the next ones in input order; items in between that already ran are skipped.
    """
    if d.paused:
        return  # a paused run starts nothing new; `refill` on resume fills the free slots
    progress = d.tasks[task_id].progress
    if progress is None or progress.next_index >= progress.total:
        return
    free = progress.concurrency - progress.in_flight
    if free < 1:
        return
    ready = sorted(
        index
        for (owner, index), item in d.items.items()
        if owner == task_id and index >= progress.next_index and item.status is TaskStatus.PENDING
    )[:free]
    for index in ready:
        item = d.items[(task_id, index)]
        d.items[(task_id, index)] = msgspec.structs.replace(
            item, status=TaskStatus.SCHEDULED, attempt=item.attempt + 1, scheduled_at=d.now
        )
        _dispatch(d, task_id, template, index)
    if ready:
        progress = msgspec.structs.replace(
            progress, next_index=ready[-1] + 1, in_flight=progress.in_flight + len(ready)
        )
        d.update_task(task_id, progress=progress)


def refill(d: Draft) -> None:
    """On resume: every running map dispatches pending items up to its concurrency."""
    for task_id, task in list(d.tasks.items()):
        compiled = d.workflow.tasks.get(task_id)
        if compiled is None or compiled.map_task is None or task.status is not TaskStatus.RUNNING:
            continue
        fill(d, task_id, compiled.map_task)


def _dispatch(
    d: Draft, task_id: str, template: CompiledTask, index: int, *, again: bool = False
) -> None:
    """As the decider's `_dispatch`, for one item: `again` counts one more delivery."""
    item = d.items[(task_id, index)]
    if again:
        item = _set_item(d, item, delivery=item.delivery + 1)
    else:
        item = _set_item(d, item, delivery=1, resends=0)
    delivery = item.delivery
    d.command(
        dispatch_command(
            d,
            task_id,
            template,
            attempt=item.attempt,
            input=item.input,
            item=index,
            delivery=delivery,
        )
    )
    arm_dispatch_timeout(d, template, task_id, item.attempt, item=index)
    data: dict[str, Any] = {"item": index, "queue": template.queue}
    if again:
        data["redispatch"] = True
        data["delivery"] = delivery
    d.record("item.scheduled", task_id, item.attempt, data=data)


# --- item events ------------------------------------------------------------------------


def item_handler(event: Event) -> ItemHandler | None:
    """The handler of an event about one map item; None for every other event."""
    if getattr(event, "item", None) is None:
        return None
    # An item event with no handler here changes nothing; it must never reach the handlers
    # of whole tasks.
    handler: ItemHandler
    if isinstance(event, TimerFired):
        handler = _ITEM_TIMERS.get(event.kind, _ignore)
    else:
        handler = _ITEM_EVENTS.get(type(event), _ignore)
    return handler


def _ignore(d: Draft, event: Any, advance: Advance) -> None:
    return None


def _current(
    d: Draft, task_id: str | None, index: int | None, attempt: int, statuses: frozenset[TaskStatus]
) -> tuple[MapItem, CompiledTask] | None:
    """The item and the map's template if the event is about its current attempt."""
    if d.status is not RunStatus.RUNNING or task_id is None or index is None:
        return None
    task, compiled = d.tasks.get(task_id), d.workflow.tasks.get(task_id)
    if task is None or compiled is None or compiled.map_task is None:
        return None
    if task.status is not TaskStatus.RUNNING or task.progress is None:
        return None
    item = d.items.get((task_id, index))
    if item is None or item.attempt != attempt or attempt < 1 or item.status not in statuses:
        return None
    if _awaiting_backoff(item):
        return None
    return item, compiled.map_task


def _awaiting_backoff(item: MapItem) -> bool:
    return item.status is TaskStatus.SCHEDULED and item.scheduled_at is None


def _set_item(d: Draft, item: MapItem, **changes: Any) -> MapItem:
    updated = msgspec.structs.replace(item, **changes)
    d.items[(item.task_id, item.index)] = updated
    return updated


def _on_started(
    d: Draft, event: TaskStarted | TaskCompleted | TaskFailed, advance: Advance
) -> None:
    """The item's attempt began: its `task.started`, or the start its quick result carries."""
    scheduled = frozenset({TaskStatus.SCHEDULED})
    found = _current(d, event.task_id, event.item, event.attempt, scheduled)
    if found is None:
        return
    item, template = found
    disarm_dispatch_timeout(d, template, item.task_id, item.attempt, item=item.index)
    _set_item(d, item, status=TaskStatus.RUNNING, started_at=event.started_at or d.now)
    if template.timeout_seconds is not None:
        d.command(
            StartTimer(
                run_id=d.original.id,
                kind=TimerKind.ATTEMPT_TIMEOUT,
                task_id=item.task_id,
                attempt=item.attempt,
                item=item.index,
                fire_at=after(d.now, template.timeout_seconds),
            )
        )
    heartbeat.arm(d, template, item.task_id, item.attempt, item=item.index)
    data = {"item": item.index, "worker": event.worker}
    d.record("item.started", item.task_id, item.attempt, data=data)


def _on_heartbeat(d: Draft, event: TaskHeartbeat, advance: Advance) -> None:
    """Keep the running item's last heartbeat and move its heartbeat timer on."""
    running = frozenset({TaskStatus.RUNNING})
    found = _current(d, event.task_id, event.item, event.attempt, running)
    if found is None:
        return
    item, template = found
    _set_item(d, item, heartbeat=heartbeat.beat(event, d.now))
    heartbeat.arm(d, template, item.task_id, item.attempt, item=item.index)
    d.quiet = True


def _on_completed(d: Draft, event: TaskCompleted, advance: Advance) -> None:
    found = _current(d, event.task_id, event.item, event.attempt, _ACTIVE)
    if found is None:
        return
    item, template = found
    _cancel_attempt_timers(d, item, template)
    _set_item(
        d, item, status=TaskStatus.COMPLETED, output=event.output, error=None, finished_at=d.now
    )
    d.record("item.completed", item.task_id, item.attempt, data={"item": item.index})
    _count(d, item.task_id, completed=1)
    _after_item(d, item.task_id, template, advance)


def _on_failed(d: Draft, event: TaskFailed, advance: Advance) -> None:
    found = _current(d, event.task_id, event.item, event.attempt, _ACTIVE)
    if found is None:
        return
    item, template = found
    _cancel_attempt_timers(d, item, template)
    data = {"item": item.index, "error": msgspec.to_builtins(event.error)}
    d.record("item.failed", item.task_id, item.attempt, data=data)
    _attempt_failed(d, item, template, event.error, final_status=TaskStatus.FAILED, advance=advance)


def _on_timed_out(d: Draft, event: TimerFired, advance: Advance) -> None:
    found = _current(d, event.task_id, event.item, event.attempt, _ACTIVE)
    if found is None:
        return
    item, template = found
    error = heartbeat.timeout_error(event.kind, template, item.attempt, item.index)
    data = {"item": item.index, "error": msgspec.to_builtins(error)}
    d.record("item.timed_out", item.task_id, item.attempt, data=data)
    heartbeat.abandon(d, template, item.task_id, item.attempt, fired=event.kind, item=item.index)
    _attempt_failed(d, item, template, error, final_status=TaskStatus.TIMED_OUT, advance=advance)


def _on_retry_due(d: Draft, event: TimerFired, advance: Advance) -> None:
    if d.status is not RunStatus.RUNNING or event.task_id is None or event.item is None:
        return
    task, compiled = d.tasks.get(event.task_id), d.workflow.tasks.get(event.task_id)
    item = d.items.get((event.task_id, event.item))
    if task is None or task.status is not TaskStatus.RUNNING or item is None:
        return
    if compiled is None or compiled.map_task is None:
        return
    if not _awaiting_backoff(item) or item.attempt != event.attempt:
        return
    if d.paused:
        _hold(d, item)
        return
    _set_item(d, item, scheduled_at=d.now)
    _dispatch(d, item.task_id, compiled.map_task, item.index)


def _hold(d: Draft, item: MapItem) -> None:
    """A retry came due while paused: the item waits as `pending` and frees its slot.

    Its attempt count goes back by one so the dispatch after the resume sends the same
    attempt number, and `next_index` moves back to it so the refill finds it first.
    """
    _set_item(d, item, status=TaskStatus.PENDING, attempt=item.attempt - 1)
    progress = d.tasks[item.task_id].progress
    if progress is not None:  # `_on_retry_due` found the task running, so it has one
        progress = msgspec.structs.replace(
            progress,
            in_flight=max(progress.in_flight - 1, 0),
            next_index=min(progress.next_index, item.index),
        )
        d.update_task(item.task_id, progress=progress)
    data = {"item": item.index, "reason": "the run is paused"}
    d.record("item.retry_held", item.task_id, item.attempt, data=data)


def _on_dispatch_lost(d: Draft, event: DispatchLost, advance: Advance) -> None:
    found = _current(d, event.task_id, event.item, event.attempt, _ACTIVE)
    if found is None:
        return
    item, template = found
    _set_item(d, item, status=TaskStatus.SCHEDULED, started_at=None)
    _dispatch(d, item.task_id, template, item.index, again=True)


def _cancel_attempt_timers(d: Draft, item: MapItem, template: CompiledTask) -> None:
    """A result ends the item's attempt: drop its timers (schedule-to-start if unstarted)."""
    if item.status is TaskStatus.SCHEDULED:
        disarm_dispatch_timeout(d, template, item.task_id, item.attempt, item=item.index)
    else:
        heartbeat.disarm(d, template, item.task_id, item.attempt, item=item.index)
    d.command(
        CancelTimer(
            run_id=d.original.id,
            kind=TimerKind.ATTEMPT_TIMEOUT,
            task_id=item.task_id,
            attempt=item.attempt,
            item=item.index,
        )
    )


def _attempt_failed(
    d: Draft,
    item: MapItem,
    template: CompiledTask,
    error: ErrorInfo,
    *,
    final_status: TaskStatus,
    advance: Advance,
) -> None:
    """Retry the item after its backoff if the template's policy allows, else end it."""
    try:
        policy = retry_policy(d, template)
    except DynamicValueInvalid as exc:  # checked when the map started; kept for totality
        policy, error = None, dynamic_value_error(exc)
    retry = None if policy is None else retry_of(policy, item.attempt, error, d.now)
    if retry is not None:
        _set_item(
            d,
            item,
            status=TaskStatus.SCHEDULED,
            attempt=retry.attempt,
            error=error,
            scheduled_at=None,
            started_at=None,
        )
        d.command(retry.timer(d.original.id, item.task_id, item.index))
        data = {"item": item.index, **retry.history_data()}
        d.record("item.retry_scheduled", item.task_id, retry.attempt, data=data)
        return
    _set_item(d, item, status=final_status, error=error, finished_at=d.now)
    _count(d, item.task_id, failed=1)
    compiled = d.workflow.tasks[item.task_id]
    if compiled.on_failure == "fail_fast":
        message = f"item {item.index} failed: {error.type}: {error.message}"
        _fail_map(d, item.task_id, _error("MapItemFailed", message))
        return
    _after_item(d, item.task_id, template, advance)


def _count(d: Draft, task_id: str, *, completed: int = 0, failed: int = 0) -> None:
    progress = d.tasks[task_id].progress
    if progress is None:  # `_current` checked it; kept for totality
        return
    progress = msgspec.structs.replace(
        progress,
        in_flight=max(progress.in_flight - 1, 0),
        completed=progress.completed + completed,
        failed=progress.failed + failed,
    )
    d.update_task(task_id, progress=progress)


def _after_item(d: Draft, task_id: str, template: CompiledTask, advance: Advance) -> None:
    """Refill the freed slot; when every item is done, end the map and move the run on."""
    fill(d, task_id, template)
    progress = d.tasks[task_id].progress
    if progress is None or progress.finished < progress.total:
        return
    items = [d.items.get((task_id, index)) for index in range(progress.total)]
    if any(item is None for item in items):  # `items_wanted` loads them all; for totality
        _fail_map(d, task_id, _error("MapItemsMissing", "not every item could be read"))
        return
    outputs = [item.output if item is not None else None for item in items]
    if progress.failed:
        message = f"{progress.failed} of {progress.total} items failed"
        d.update_task(task_id, output=outputs)
        _fail_map(d, task_id, _error("MapItemsFailed", message), cancel_items=False)
        return
    disarm_timeout(d, task_id)
    complete_task(d, task_id, d.tasks[task_id].attempt, outputs)
    advance(d)


def _fail_map(d: Draft, task_id: str, error: ErrorInfo, *, cancel_items: bool = True) -> None:
    if cancel_items:
        d.command(CancelMapItems(run_id=d.original.id, task_id=task_id))
        progress = d.tasks[task_id].progress
        if progress is not None and progress.in_flight > 0:
            # Workers running its other items stop them (one message for the whole map).
            reason = f"map task '{task_id}' failed"
            d.command(CancelAttempts(run_id=d.original.id, task_id=task_id, reason=reason))
    disarm_timeout(d, task_id)
    attempt = d.tasks[task_id].attempt
    d.update_task(task_id, status=TaskStatus.FAILED, error=error, finished_at=d.now)
    d.record("task.failed", task_id, attempt, data={"error": msgspec.to_builtins(error)})
    fail_run(d, task_id, error)


def _error(kind: str, message: str) -> ErrorInfo:
    return ErrorInfo(type=kind, message=message, retryable=False)


_ITEM_EVENTS: dict[type, ItemHandler] = {
    TaskStarted: _on_started,
    TaskCompleted: with_carried_start(_on_started, _on_completed),
    TaskFailed: with_carried_start(_on_started, _on_failed),
    TaskHeartbeat: _on_heartbeat,
    DispatchLost: _on_dispatch_lost,
}
_ITEM_TIMERS: dict[TimerKind, ItemHandler] = {
    TimerKind.ATTEMPT_TIMEOUT: _on_timed_out,
    TimerKind.RETRY: _on_retry_due,
    TimerKind.DISPATCH_TIMEOUT: lambda d, e, advance: redispatch.on_item_due(
        d, e, advance, _attempt_failed
    ),
    TimerKind.HEARTBEAT_TIMEOUT: _on_timed_out,
}
