"""Property tests: random DAGs in a world that reorders, duplicates and delays everything.

The world turns the decider's commands into the events a real engine would see
(starts, results, timers, signals, cancels), delivers them in any order, repeats old
ones, fires timers that were already cancelled, and checks the engine's guarantees
after every single decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.domain._runs import START, workflow
from treadle.domain.compile import Workflow
from treadle.domain.decider import decide, new_run
from treadle.domain.events import (
    CancelRequested,
    CancelTimer,
    DispatchTask,
    Event,
    RunStarted,
    SignalReceived,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunState, TaskStatus

R = "r1"
STEP_BUDGET = 80
TimerKey = tuple[TimerKind, str | None, int]


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random acyclic workflow: each task depends only on tasks listed before it."""
    size = draw(st.integers(min_value=1, max_value=6))
    tasks: dict[str, Any] = {}
    for index in range(size):
        task_id = f"t{index}"
        after = draw(st.lists(st.sampled_from(list(tasks)), unique=True)) if tasks else []
        kind = draw(st.sampled_from(["handler", "handler", "handler", "sleep", "signal"]))
        task: dict[str, Any] = {"after": after}
        if kind == "handler":
            task["handler"] = "h"
            task["timeout"] = "10s"
            task["retry"] = {
                "max_attempts": draw(st.integers(min_value=1, max_value=3)),
                "non_retryable": ["Fatal"],
            }
            if draw(st.booleans()):
                task["schedule_to_start_timeout"] = "3s"  # and the broker may lose it
        elif kind == "sleep":
            task.update(type="sleep", duration="5s")
        else:
            task["type"] = "signal"
            if draw(st.booleans()):
                task["timeout"] = "1m"
        if after and draw(st.booleans()):
            task["when"] = f"${{ tasks.{after[0]}.output.go }}"
        tasks[task_id] = task
    top: dict[str, Any] = {"timeout": "1h"} if draw(st.booleans()) else {}
    return {"tasks": tasks, **top}


@dataclass
class World:
    """Everything in flight around one run, and the checks applied to each decision."""

    wf: Workflow
    state: RunState
    now: datetime = START
    inbox: list[Event] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)
    timers: dict[TimerKey, datetime] = field(default_factory=dict)
    ghosts: list[TimerKey] = field(default_factory=list)
    pending_dispatches: list[DispatchTask] = field(default_factory=list)

    def apply(self, event: Event) -> None:
        before = self.state
        frozen_before = msgspec.json.encode(before)
        stale = self._is_stale(event)
        decision = decide(self.wf, before, event, self.now)
        assert msgspec.json.encode(before) == frozen_before, "decide mutated its input"
        if stale:
            assert not decision.changed, f"stale {event!r} changed the run"
            assert decision.state is before
        if decision.state != before:
            assert decision.history, "a state change without history"
        self._check_transition(before, decision.state)
        self.state = decision.state
        self.delivered.append(event)
        for command in decision.commands:
            self._carry_out(command)

    def _is_stale(self, event: Event) -> bool:
        if self.state.status.is_terminal:
            return True
        if isinstance(event, TaskStarted | TaskCompleted | TaskFailed):
            task = self.state.tasks[event.task_id]
            waiting = task.status is TaskStatus.SCHEDULED and task.scheduled_at is None
            allowed = (
                (TaskStatus.SCHEDULED,)
                if isinstance(event, TaskStarted)
                else (TaskStatus.SCHEDULED, TaskStatus.RUNNING)
            )
            return event.attempt != task.attempt or task.status not in allowed or waiting
        if isinstance(event, TimerFired) and event.task_id is not None:
            task = self.state.tasks[event.task_id]
            return event.attempt != task.attempt or task.status.is_terminal
        return False

    def _check_transition(self, before: RunState, after: RunState) -> None:
        if before.status.is_terminal:
            assert after == before, "a finished run changed"
        for task_id, old in before.tasks.items():
            new = after.tasks[task_id]
            if old.status.is_terminal:
                assert (new.status, new.output, new.attempt) == (
                    old.status,
                    old.output,
                    old.attempt,
                )
            compiled = self.wf.tasks[task_id]
            assert new.attempt <= compiled.retry.max_attempts
            if new.status is TaskStatus.COMPLETED and compiled.type == "handler":
                assert new.output["attempt"] == new.attempt, "output of a stale attempt"
        if after.status.is_terminal:
            assert all(t.status.is_terminal for t in after.tasks.values())

    def _carry_out(self, command: object) -> None:
        if isinstance(command, StartTimer):
            self.timers[(command.kind, command.task_id, command.attempt)] = command.fire_at
        elif isinstance(command, CancelTimer):
            key = (command.kind, command.task_id, command.attempt)
            if self.timers.pop(key, None) is not None:
                self.ghosts.append(key)  # a timer already claimed may still fire late
        elif isinstance(command, DispatchTask):
            self.pending_dispatches.append(command)

    def fire(self, key: TimerKey) -> None:
        fire_at = self.timers.pop(key, self.now)
        self.now = max(self.now, fire_at)
        kind, task_id, attempt = key
        self.apply(TimerFired(run_id=R, kind=kind, task_id=task_id, attempt=attempt))

    def waiting_signals(self) -> list[str]:
        return [
            task_id
            for task_id, task in self.state.tasks.items()
            if task.type == "signal" and task.status is TaskStatus.RUNNING
        ]


def outcomes(draw: st.DrawFn, dispatch: DispatchTask, wf: Workflow) -> list[Event]:
    """What a worker reports for one dispatch: maybe a start, then exactly one result (a
    quick attempt's carries its start instead); or, for a task with a schedule-to-start
    limit, nothing at all (the broker lost it)."""
    can_lose = wf.tasks[dispatch.task_id].schedule_to_start_seconds is not None
    if can_lose and draw(st.integers(0, 5)) == 0:
        return []  # its schedule-to-start timer sends it again
    events: list[Event] = []
    start = draw(st.sampled_from(["alone", "carried", "unseen"]))
    if start == "alone":
        events.append(TaskStarted(run_id=R, task_id=dispatch.task_id, attempt=dispatch.attempt))
    started_at = START if start == "carried" else None
    verdict = draw(st.sampled_from(["ok", "ok", "fail", "fatal"]))
    if verdict == "ok":
        output = {"attempt": dispatch.attempt, "go": draw(st.booleans())}
        events.append(
            TaskCompleted(
                run_id=R,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                output=output,
                started_at=started_at,
            )
        )
    else:
        error = ErrorInfo(type="Fatal" if verdict == "fatal" else "IOError", message="x")
        events.append(
            TaskFailed(
                run_id=R,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                error=error,
                started_at=started_at,
            )
        )
    return events


def random_step(world: World, draw: st.DrawFn) -> None:
    """One thing happens: an event arrives, a timer fires, a signal or a cancel comes in."""
    choices = []
    if world.inbox:
        choices.append("deliver")
    if world.delivered:
        choices.append("duplicate")
    if world.timers:
        choices.append("timer")
    if world.ghosts:
        choices.append("ghost")
    choices += ["signal", "cancel"] if world.wf.tasks else []
    choice = draw(st.sampled_from(choices))
    world.now += timedelta(milliseconds=1)
    if choice == "deliver":
        world.apply(world.inbox.pop(draw(st.integers(0, len(world.inbox) - 1))))
    elif choice == "duplicate":
        world.apply(draw(st.sampled_from(world.delivered)))
    elif choice == "timer":
        world.fire(draw(st.sampled_from(sorted(world.timers))))
    elif choice == "ghost":
        kind, task_id, attempt = draw(st.sampled_from(world.ghosts))
        world.apply(TimerFired(run_id=R, kind=kind, task_id=task_id, attempt=attempt))
    elif choice == "signal":
        name = draw(st.sampled_from(list(world.wf.tasks)))
        world.apply(SignalReceived(run_id=R, name=name, payload=draw(st.integers())))
    elif draw(st.integers(0, 9)) == 0:  # cancels are rarer, so most runs get further
        world.apply(CancelRequested(run_id=R, reason="random"))


def drain(world: World, draw: st.DrawFn) -> None:
    """Let the world settle without randomness, so every run must come to an end."""
    for _ in range(500):
        world.inbox.extend(e for d in world.pending_dispatches for e in outcomes(draw, d, world.wf))
        world.pending_dispatches.clear()
        if world.state.status.is_terminal:
            return
        if world.inbox:
            world.apply(world.inbox.pop(0))
        elif world.waiting_signals():
            world.apply(SignalReceived(run_id=R, name=world.waiting_signals()[0], payload=1))
        elif world.timers:
            world.fire(min(world.timers, key=lambda k: world.timers[k]))
        else:
            return


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(definition=dags(), data=st.data())
def test_every_run_ends_and_keeps_the_engine_guarantees(
    definition: dict[str, Any], data: st.DataObject
) -> None:
    """Under reordering, duplicates, late timers, signals and cancels, every run ends well."""
    wf = workflow(definition["tasks"], **{k: v for k, v in definition.items() if k != "tasks"})
    world = World(wf=wf, state=new_run(wf, run_id=R, version=1, input={}, now=START))
    world.apply(RunStarted(run_id=R))
    for _ in range(data.draw(st.integers(0, STEP_BUDGET))):
        world.inbox.extend(
            e for d in world.pending_dispatches for e in outcomes(data.draw, d, world.wf)
        )
        world.pending_dispatches.clear()
        if world.state.status.is_terminal:
            break
        random_step(world, data.draw)
    drain(world, data.draw)
    event(f"run {world.state.status.value}")
    assert world.state.status.is_terminal, "the run never ended"
    assert all(task.status.is_terminal for task in world.state.tasks.values())
