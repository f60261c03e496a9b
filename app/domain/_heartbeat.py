"""Heartbeats and attempt timeouts in the decider, for whole tasks and map items alike.

A running attempt of a handler task with a `heartbeat_timeout` has a HEARTBEAT_TIMEOUT
timer: its start arms it and each heartbeat moves it on. When it fires, the attempt fails
with `HeartbeatTimeout` (retryable, so the retry policy decides) just as a start-to-close
timeout fails it with `TimeoutError`. Either way the attempt is abandoned: its other timer
is dropped and the workers are told to stop it (`CancelAttempts`); its late result is
stale by its attempt number.

The last heartbeat (time, attempt, details) is kept on the task or item, across attempts.
A heartbeat records no history entry: the decision is `quiet` (a history row per beat
would grow without bound); the timer it moves is the only other write.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from treadle.domain._run_draft import Draft, cancel_attempt_timer, start_attempt_timer
from treadle.domain._task_rules import CompiledTask
from treadle.domain.events import CancelAttempts, TaskHeartbeat, TimerKind
from treadle.domain.state import MAX_HEARTBEAT_DETAILS_BYTES, ErrorInfo, Heartbeat

MAX_DETAILS_BYTES = MAX_HEARTBEAT_DETAILS_BYTES
"""Larger details are dropped (the beat counts). The worker refuses them before sending
(`HeartbeatTooLarge`); this protects the store from a worker that does not."""

ATTEMPT_TIMERS = (TimerKind.ATTEMPT_TIMEOUT, TimerKind.HEARTBEAT_TIMEOUT)
"""The timers that end a running attempt."""


def arm(
    d: Draft, compiled: CompiledTask, task_id: str, attempt: int, *, item: int | None = None
) -> None:
    """Start (or move on) the attempt's heartbeat timer, if its task has a heartbeat limit."""
    seconds = compiled.heartbeat_timeout_seconds
    if seconds is not None:
        start_attempt_timer(d, TimerKind.HEARTBEAT_TIMEOUT, seconds, task_id, attempt, item=item)


def disarm(
    d: Draft, compiled: CompiledTask, task_id: str, attempt: int, *, item: int | None = None
) -> None:
    """Drop the attempt's heartbeat timer: the attempt ended."""
    if compiled.heartbeat_timeout_seconds is not None:
        cancel_attempt_timer(d, TimerKind.HEARTBEAT_TIMEOUT, task_id, attempt, item=item)


def beat(event: TaskHeartbeat, now: datetime) -> Heartbeat:
    """The heartbeat to keep for `event`; details over `MAX_DETAILS_BYTES` are dropped."""
    details = event.details
    if details is not None and len(msgspec.json.encode(details)) > MAX_DETAILS_BYTES:
        details = None
    return Heartbeat(at=now, attempt=event.attempt, details=details)


def timeout_error(
    kind: TimerKind, compiled: CompiledTask, attempt: int, item: int | None = None
) -> ErrorInfo:
    """The failure of an attempt whose start-to-close or heartbeat timer fired."""
    which = f"attempt {attempt}" if item is None else f"attempt {attempt} of item {item}"
    if kind is TimerKind.HEARTBEAT_TIMEOUT:
        seconds = compiled.heartbeat_timeout_seconds or 0.0
        message = f"{which} sent no heartbeat for {seconds:g}s (its heartbeat_timeout)"
        return ErrorInfo(type="HeartbeatTimeout", message=message, retryable=True)
    seconds = compiled.timeout_seconds or 0.0
    message = f"{which} exceeded its timeout of {seconds:g}s"
    return ErrorInfo(type="TimeoutError", message=message, retryable=True)


def abandon(
    d: Draft,
    compiled: CompiledTask,
    task_id: str,
    attempt: int,
    *,
    fired: TimerKind,
    item: int | None = None,
) -> None:
    """A timer ended a running attempt: drop its other timer and tell its worker to stop."""
    if fired is not TimerKind.ATTEMPT_TIMEOUT:
        cancel_attempt_timer(d, TimerKind.ATTEMPT_TIMEOUT, task_id, attempt, item=item)
    if fired is not TimerKind.HEARTBEAT_TIMEOUT:
        disarm(d, compiled, task_id, attempt, item=item)
    reason = f"the attempt timed out ({fired.value})"
    d.command(
        CancelAttempts(
            run_id=d.original.id, task_id=task_id, attempt=attempt, item=item, reason=reason
        )
    )
