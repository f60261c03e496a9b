"""An in-memory fake of the store's decision port: runs, history, outbox and timers.

`apply` is atomic by construction (the simulation is single-threaded): it runs the real
decider and the real `changes_from_decision` mapping, then writes the state, history,
outbox rows and timers together, as `SqlStore.apply` does in one transaction. It also
checks the per-decision invariants the simulation is about.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.domain.compile import Workflow
from app.domain.decider import decide
from app.domain.events import (
    CancelTimer,
    DispatchLost,
    Event,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
)
from app.domain.state import RunState, TaskStatus
from app.modules.orchestrator._changes import changes_from_decision, with_cancelled
from app.ports import Changes, OutgoingMessage

TERMINAL_TASK = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    }
)
ACTIVE_TASK = frozenset({TaskStatus.SCHEDULED, TaskStatus.RUNNING})

TimerKey = tuple[str, str, str | None, int, int | None]


class InvariantBroken(AssertionError):
    """A simulation found a state the engine's guarantees forbid."""


@dataclass
class OutboxRow:
    """One outbox row: the message a committed decision wrote, and whether it was sent."""

    id: int
    message: OutgoingMessage
    created_at: datetime
    sent: bool = False


@dataclass
class SimStore:
    """Runs, their history, the outbox and the timers, changed only through `apply`."""

    workflows: dict[str, Workflow]
    runs: dict[str, RunState] = field(default_factory=dict)
    history: dict[str, list[tuple[str, str | None, int | None]]] = field(default_factory=dict)
    outbox: list[OutboxRow] = field(default_factory=list)
    timers: dict[TimerKey, StartTimer] = field(default_factory=dict)
    decisions: int = 0

    def create(self, run: RunState) -> None:
        """Insert a new, pending run."""
        self.runs[run.id] = run
        self.history[run.id] = []

    def apply(
        self, run_id: str, event: Event, now: datetime, also_cancel: CancelTimer | None = None
    ) -> list[OutboxRow]:
        """Decide on `event` and commit what it changes; the new outbox rows."""
        before = self.runs[run_id]
        decision = decide(self.workflows[before.workflow], before, event, now)
        changes = changes_from_decision(decision, source="sim")
        if also_cancel is not None:
            changes = with_cancelled(changes, before, also_cancel)
        if changes is None:
            return []
        _check_decision(before, changes, event)
        return self._commit(run_id, changes, now)

    def _commit(self, run_id: str, changes: Changes, now: datetime) -> list[OutboxRow]:
        self.decisions += 1
        self.runs[run_id] = changes.state
        self.history[run_id].extend((h.type, h.task_id, h.attempt) for h in changes.history)
        for cancel in changes.cancel_timers:
            self.timers.pop(_key(cancel), None)
        for start in changes.start_timers:
            self.timers[_key(start)] = start
        rows = [
            OutboxRow(id=len(self.outbox) + i, message=m, created_at=now)
            for i, m in enumerate(changes.outbox)
        ]
        self.outbox.extend(rows)
        return rows

    def due_timers(self, now: datetime) -> list[StartTimer]:
        """Timers due at `now`, soonest first."""
        return sorted((t for t in self.timers.values() if t.fire_at <= now), key=_fire_order)

    def inflight(self) -> list[tuple[str, str, int]]:
        """(run, task, attempt) of every attempt scheduled or running, as recovery reads it."""
        return [
            (run.id, task.task_id, task.attempt)
            for run in self.runs.values()
            for task in run.tasks.values()
            if task.status in ACTIVE_TASK and task.attempt >= 1
        ]


def _key(timer: StartTimer | CancelTimer) -> TimerKey:
    return (timer.run_id, str(timer.kind), timer.task_id, timer.attempt, timer.item)


def _fire_order(timer: StartTimer) -> tuple[datetime, TimerKey]:
    return (timer.fire_at, _key(timer))


def _check_decision(before: RunState, changes: Changes, event: Event) -> None:
    """Per-decision guarantees: terminal tasks stay put; stale attempts change nothing."""
    after = changes.state
    for task_id, old in before.tasks.items():
        if old.status in TERMINAL_TASK and after.tasks[task_id] != old:
            msg = f"task {task_id} left terminal {old.status} on {type(event).__name__}"
            raise InvariantBroken(msg)
    if isinstance(event, TaskStarted | TaskCompleted | TaskFailed | DispatchLost | TimerFired):
        task_id = event.task_id
        if task_id is None or task_id not in before.tasks:
            return
        current = before.tasks[task_id]
        stale = event.attempt != current.attempt or current.status in TERMINAL_TASK
        if stale and (changes.history or changes.outbox or changes.start_timers):
            msg = (
                f"a stale {type(event).__name__} (attempt {event.attempt}) changed task "
                f"{task_id} at attempt {current.attempt} ({current.status})"
            )
            raise InvariantBroken(msg)
