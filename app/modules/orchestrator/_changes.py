"""Turning the decider's `Decision` into the `Changes` the store writes atomically."""

from __future__ import annotations

import msgspec

from treadle.domain.events import (
    CancelAttempts,
    CancelChildRun,
    CancelMapItems,
    CancelTimer,
    ChildRunFinished,
    Decision,
    DispatchTask,
    RunFinished,
    StartChildRun,
    StartTimer,
)
from treadle.domain.keys import TimerKey
from treadle.domain.state import RunState
from treadle.messages import CONTROL_CHANNEL, EVENTS_CHANNEL, envelope, tasks_channel, to_message
from treadle.observability import get_logger
from treadle.ports import Changes, DueTimer, OutgoingMessage

log = get_logger(__name__)


def changes_from_decision(
    decision: Decision, *, source: str, traceparent: str | None = None
) -> Changes | None:
    """What to persist for a decision; None when the decision changes nothing."""
    if not decision.changed:
        return None
    outbox: list[OutgoingMessage] = []
    # The store cancels timers before it starts them, so a timer this decision starts and
    # then cancels (an attempt armed and ended in one decision) is not started at all.
    start: dict[TimerKey, StartTimer] = {}
    cancel: list[CancelTimer] = []
    cancel_items: list[str] = []
    for command in decision.commands:
        if isinstance(command, DispatchTask):
            outbox.append(_dispatch_message(command, source, traceparent))
        elif isinstance(command, StartTimer):
            start[command.timer_key] = command
        elif isinstance(command, CancelTimer):
            start.pop(command.timer_key, None)
            cancel.append(command)
        elif isinstance(command, RunFinished):
            outbox.extend(child_finished_message(command, source, traceparent))
        elif isinstance(command, StartChildRun | CancelChildRun):
            outbox.append(events_message(command, source, traceparent))
        elif isinstance(command, CancelMapItems):
            cancel_items.append(command.task_id)
        elif isinstance(command, CancelAttempts):
            # Through the outbox like a dispatch: a committed cancel is never lost.
            message = to_message(envelope(command, source=source, traceparent=traceparent))
            outbox.append(OutgoingMessage(channel=CONTROL_CHANNEL, message=message))
    return Changes(
        state=decision.state,
        history=decision.history,
        outbox=outbox,
        start_timers=list(start.values()),
        cancel_timers=cancel,
        cancel_items=cancel_items,
        traceparent=traceparent,
    )


def _dispatch_message(
    command: DispatchTask, source: str, traceparent: str | None
) -> OutgoingMessage:
    message = to_message(envelope(command, source=source, traceparent=traceparent))
    return OutgoingMessage(channel=tasks_channel(command.queue), message=message)


def events_message(
    payload: StartChildRun | CancelChildRun | ChildRunFinished,
    source: str,
    traceparent: str | None,
) -> OutgoingMessage:
    """An outbox message on the events channel."""
    message = to_message(envelope(payload, source=source, traceparent=traceparent))
    return OutgoingMessage(channel=EVENTS_CHANNEL, message=message)


def child_finished_message(
    finished: RunFinished, source: str, traceparent: str | None
) -> list[OutgoingMessage]:
    """The message telling a parent run its child ended; none for a run without parent."""
    if finished.parent_run_id is None or finished.parent_task_id is None:
        return []
    event = ChildRunFinished(
        run_id=finished.parent_run_id,
        task_id=finished.parent_task_id,
        child_run_id=finished.run_id,
        status=finished.status,
        output=finished.output,
        error=finished.error,
    )
    return [events_message(event, source, traceparent)]


def fired_timer_cancel(timer: DueTimer) -> CancelTimer:
    """The command that deletes a timer row once it has fired."""
    return CancelTimer(
        run_id=timer.run_id,
        kind=timer.kind,
        task_id=timer.task_id,
        attempt=timer.attempt,
        item=timer.item,
    )


def with_cancelled(changes: Changes | None, state: RunState, cancel: CancelTimer) -> Changes:
    """`changes` plus deleting the fired timer, so the row goes in the same transaction.

    A timer the decider found stale still has to be deleted, so with no changes this is
    a `Changes` that only cancels it. A decision that re-arms the same timer identity
    (start and cancel together) keeps the new one: the cancel is then left out.
    """
    if changes is None:
        return Changes(state=state, cancel_timers=[cancel])
    if cancel.timer_key in {t.timer_key for t in changes.start_timers}:
        return changes
    if cancel in changes.cancel_timers:
        return changes
    return msgspec.structs.replace(changes, cancel_timers=[*changes.cancel_timers, cancel])
