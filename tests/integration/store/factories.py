"""Builders for the Structs the store persists, made directly (not by the decider)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.domain.events import HistoryEntry, StartTimer, TimerKind
from treadle.domain.state import RunState, RunStatus, TaskState
from treadle.messages import Message
from treadle.ports import Changes, OutgoingMessage

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """A fixed instant `seconds` after T0 (aware UTC)."""
    return T0 + timedelta(seconds=seconds)


def new_id() -> str:
    return uuid.uuid4().hex


def make_run(
    run_id: str | None = None,
    *,
    workflow: str = "wf",
    created_at: datetime = T0,
    key: str | None = None,
    status: RunStatus = RunStatus.PENDING,
    task_ids: Sequence[str] = ("first", "second"),
    input: Any = None,
) -> RunState:
    """A run with pending tasks named `task_ids`."""
    return RunState(
        id=run_id or new_id(),
        workflow=workflow,
        version=1,
        status=status,
        input=input,
        created_at=created_at,
        tasks={t: TaskState(task_id=t, input={"n": i}) for i, t in enumerate(task_ids)},
        idempotency_key=key,
    )


def message(run_id: str, text: str = "hello") -> OutgoingMessage:
    """An outgoing message on the `tasks.default` channel."""
    return OutgoingMessage(
        channel="tasks.default",
        message=Message(key=run_id, body=text.encode(), headers={"event_type": "x"}),
    )


def entry(kind: str, seconds: float = 0, **data: Any) -> HistoryEntry:
    """A history entry at T0+seconds."""
    return HistoryEntry(type=kind, at=at(seconds), data=data or None)


def timer(
    run_id: str, seconds: float, task_id: str | None = "first", attempt: int = 1
) -> StartTimer:
    """A retry timer for the task, firing at T0+seconds."""
    return StartTimer(
        run_id=run_id, kind=TimerKind.RETRY, fire_at=at(seconds), task_id=task_id, attempt=attempt
    )


def unchanged(state: RunState) -> Changes:
    """A decision that writes the state as it is."""
    return Changes(state=state)
