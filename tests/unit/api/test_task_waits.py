"""`TaskBody.waiting`: what an unfinished task waits for, read from the decider's own output."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.unit.domain._runs import START, Run, workflow
from treadle.api_types import WaitBody
from treadle.domain.events import (
    CancelTimer,
    PauseRequested,
    RunStarted,
    StartTimer,
    TaskFailed,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo
from treadle.modules.api._waits import waits_of
from treadle.ports import DueTimer, StoredWorkflow

pytestmark = pytest.mark.anyio
R = "r1"
BOOM = ErrorInfo(type="IOError", message="boom")
TASKS: dict[str, Any] = {
    "approve": {"type": "signal", "signal": "go", "timeout": "1h"},
    "forever": {"type": "signal"},
    "nap": {"type": "sleep", "duration": "10m"},
    "charge": {"handler": "h", "retry": {"max_attempts": 3, "initial_interval": "30s"}},
    "plain": {"handler": "h"},
}


class Store:
    """The run's timers as the store would hold them after each decision (a port fake)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.timers: dict[tuple[TimerKind, str | None, int], DueTimer] = {}
        self.reads = 0

    def apply(self, event: Any) -> None:
        self.run.apply(event)
        for command in self.run.commands:
            key = getattr(command, "kind", None), getattr(command, "task_id", None)
            if isinstance(command, CancelTimer):
                self.timers.pop((*key, command.attempt), None)  # type: ignore[arg-type]
            elif isinstance(command, StartTimer):
                timer = DueTimer(
                    run_id=R, kind=command.kind, task_id=command.task_id,
                    attempt=command.attempt, fire_at=command.fire_at,
                )  # fmt: skip
                self.timers[(command.kind, command.task_id, command.attempt)] = timer
        if isinstance(event, TimerFired):
            self.timers.pop((event.kind, event.task_id, event.attempt), None)

    async def list_timers(self, run_id: str) -> list[DueTimer]:
        self.reads += 1
        return sorted(self.timers.values(), key=lambda t: t.fire_at)

    async def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        definition = {"name": "w", "tasks": TASKS}
        return StoredWorkflow(
            name=name, version=1, definition=definition, digest="d", created_at=START
        )


def at(**delta: float) -> datetime:
    return START + timedelta(**delta)


async def waits(store: Store) -> dict[str, WaitBody]:
    return await waits_of(store.run.state, store, store)  # type: ignore[arg-type]


async def test_signal_sleep_and_retry_waits_name_what_and_until_when() -> None:
    """A signal task names its signal and timeout, a sleep its end, a failed attempt its
    backoff's end; a task that waits only for a worker waits for nothing special."""
    store = Store(Run(workflow(TASKS)))
    store.apply(RunStarted(run_id=R))
    store.run.advance(5)
    store.apply(TaskFailed(run_id=R, task_id="charge", attempt=1, error=BOOM))
    assert await waits(store) == {
        "approve": WaitBody(reason="signal", signal="go", until=at(hours=1)),
        "forever": WaitBody(reason="signal", signal="forever", until=None),
        "nap": WaitBody(reason="sleep", until=at(minutes=10)),
        "charge": WaitBody(reason="retry", until=at(seconds=35)),
    }
    store.run.advance(30)
    store.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="charge", attempt=2))
    assert "charge" not in await waits(store)  # dispatched again: it waits for a worker


async def test_a_retry_due_while_paused_waits_for_the_resume() -> None:
    """A retry whose backoff ends while the run is paused is held until the run resumes."""
    store = Store(Run(workflow({"charge": TASKS["charge"]})))
    store.apply(RunStarted(run_id=R))
    store.apply(TaskFailed(run_id=R, task_id="charge", attempt=1, error=BOOM))
    store.apply(PauseRequested(run_id=R))
    assert (await waits(store))["charge"].reason == "retry"
    store.run.advance(30)
    store.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="charge", attempt=2))
    assert await waits(store) == {"charge": WaitBody(reason="resume")}


async def test_a_run_with_nothing_waiting_costs_no_timer_read() -> None:
    """Handler tasks on their way need no read of the timers (the page polls often)."""
    store = Store(Run(workflow({"plain": {"handler": "h"}})))
    store.apply(RunStarted(run_id=R))
    assert await waits(store) == {}
    assert store.reads == 0
