"""The per-decision guarantees the simulation checks, inside each decision it applies.

The store is the real in-memory adapter (`treadle.store.memory.MemoryStore`); these checks
run in the decision callback it calls, so a broken guarantee fails the decision itself.
"""

from __future__ import annotations

from treadle.domain.events import (
    DispatchLost,
    Event,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
)
from treadle.domain.state import RunState, TaskStatus
from treadle.ports import Changes

TERMINAL_TASK = frozenset(
    {
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.SKIPPED,
        TaskStatus.CANCELLED,
        TaskStatus.TIMED_OUT,
    }
)


class InvariantBroken(AssertionError):
    """A simulation found a state the engine's guarantees forbid."""


def check_decision(before: RunState, changes: Changes, event: Event) -> None:
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
