"""Property tests for `map` tasks: random lists, caps, outcomes and run control.

A world like the decider's own property test, with map items kept apart and loaded per
decision the way the store loads them (`tests.unit.domain._items`): items succeed, fail
(with retries) or hang until their attempt timeout; results arrive in any order, twice,
or late; the run is paused, resumed, cancelled and retried at random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import workflow
from treadle.domain.events import (
    CancelMapItems,
    CancelRequested,
    CancelTimer,
    DispatchLost,
    DispatchTask,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RunStarted,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, MapItem, RunStatus, TaskStatus

R = "r1"
TimerKey = tuple[TimerKind, str | None, int, int | None]
_ACTIVE = (TaskStatus.SCHEDULED, TaskStatus.RUNNING)


@st.composite
def maps(draw: st.DrawFn) -> tuple[dict[str, Any], list[int]]:
    """A map over a random list, with a random cap, failure policy, retries and deadline."""
    template = {
        "handler": "h",
        "input": {"i": "${ index }"},
        "timeout": "10s",
        "retry": {"max_attempts": draw(st.integers(1, 3)), "non_retryable": ["Fatal"]},
    }
    if draw(st.booleans()):
        template["schedule_to_start_timeout"] = "3s"  # and the broker may lose dispatches
    task: dict[str, Any] = {
        "type": "map",
        "items": "${ input }",
        "task": template,
        "concurrency": draw(st.integers(1, 5)),
        "on_failure": draw(st.sampled_from(["fail_fast", "complete_all"])),
    }
    if draw(st.booleans()):
        task["timeout"] = "5m"
    tasks = {"m": task, "after": {"after": ["m"], "handler": "h", "timeout": "10s"}}
    return tasks, list(range(draw(st.integers(0, 30))))


@dataclass
class World:
    """One run of the map, its timers and messages in flight, and the checks per decision."""

    run: ItemRun
    concurrency: int
    inbox: list[Event] = field(default_factory=list)
    delivered: list[Event] = field(default_factory=list)
    timers: dict[TimerKey, datetime] = field(default_factory=dict)
    ghosts: list[TimerKey] = field(default_factory=list)
    dispatches: list[DispatchTask] = field(default_factory=list)
    retries: int = 0

    def apply(self, event: Event) -> None:
        before, items_before = self.run.state, dict(self.run.items)
        stale = self._is_stale(event)
        decision = self.run.apply(event)
        if stale:
            assert not decision.changed, f"stale {event!r} changed the run"
        if before.paused and not _resends(event):
            sent = [c for c in decision.commands if isinstance(c, DispatchTask)]
            assert not sent, "a paused run dispatched"
        self._check(before.status, items_before, event)
        self.delivered.append(event)
        for command in decision.commands:
            self._carry_out(command)

    def _is_stale(self, event: Event) -> bool:
        """A result, start or item timer that is not about an item's current attempt."""
        if isinstance(event, RetryRequested | PauseRequested | ResumeRequested):
            return False
        if self.run.state.status.is_terminal:
            return True
        item_id = getattr(event, "item", None)
        if item_id is None or not isinstance(event, TaskStarted | TaskCompleted | TaskFailed):
            return False
        item = self.run.items.get(("m", item_id))
        if item is None or self.run.state.tasks["m"].status is not TaskStatus.RUNNING:
            return True
        allowed = (TaskStatus.SCHEDULED,) if isinstance(event, TaskStarted) else _ACTIVE
        waiting = item.status is TaskStatus.SCHEDULED and item.scheduled_at is None
        return event.attempt != item.attempt or item.status not in allowed or waiting

    def _check(
        self, status: RunStatus, before: dict[tuple[str, int], MapItem], event: Event
    ) -> None:
        items = self.run.items
        for key, old in before.items():
            new = items[key]
            if old.status is TaskStatus.COMPLETED:
                assert (new.status, new.output) == (old.status, old.output), "a result changed"
            elif old.status.is_terminal and new.status is not old.status:
                assert isinstance(event, RetryRequested), "a finished item changed"
                assert new.status in (TaskStatus.PENDING, TaskStatus.SCHEDULED)
                assert new.attempt >= old.attempt, "a retried item reused an attempt number"
        active = [i for i in items.values() if i.status in _ACTIVE]
        assert len(active) <= self.concurrency, "more items in flight than the cap"
        task = self.run.state.tasks["m"]
        if task.status is TaskStatus.RUNNING and task.progress is not None:
            assert task.progress.in_flight == len(active), "progress lost count of items"
        if task.status is TaskStatus.COMPLETED:
            assert task.output == [{"i": i} for i in range(len(items))], "output out of order"
        if self.run.state.status.is_terminal:
            assert all(i.status.is_terminal for i in items.values()), "an item never ended"

    def _carry_out(self, command: object) -> None:
        if isinstance(command, StartTimer):
            key = (command.kind, command.task_id, command.attempt, command.item)
            self.timers[key] = command.fire_at
        elif isinstance(command, CancelTimer):
            key = (command.kind, command.task_id, command.attempt, command.item)
            if self.timers.pop(key, None) is not None:
                self.ghosts.append(key)  # a timer already claimed may still fire late
        elif isinstance(command, DispatchTask):
            self.dispatches.append(command)
        elif isinstance(command, CancelMapItems):
            pass  # `ItemRun` applies it to the items as the store does

    def fire(self, key: TimerKey) -> None:
        fire_at = self.timers.pop(key, self.run.now)
        self.run.now = max(self.run.now, fire_at)
        kind, task_id, attempt, item = key
        self.apply(TimerFired(run_id=R, kind=kind, task_id=task_id, attempt=attempt, item=item))


def _resends(event: Event) -> bool:
    """Events that may dispatch in a paused run: control, and re-sends of an attempt."""
    if isinstance(event, TimerFired):
        return event.kind is TimerKind.DISPATCH_TIMEOUT
    return isinstance(event, ResumeRequested | RetryRequested | DispatchLost)


def outcomes(draw: st.DrawFn, dispatch: DispatchTask, *, can_lose: bool) -> list[Event]:
    """A worker's report on one dispatch: a start, then a result, or silence (a timeout);
    with a schedule-to-start limit, the broker may also lose the dispatch (no report)."""
    ids: dict[str, Any] = {"run_id": R, "task_id": dispatch.task_id, "attempt": dispatch.attempt}
    ids["item"] = dispatch.item
    verdicts = ["ok"] * 12 + ["fail", "fail", "fatal", "hang"] + (["lost"] if can_lose else [])
    verdict = draw(st.sampled_from(verdicts))
    if verdict == "lost":
        return []  # its schedule-to-start timer sends it again
    started: list[Event] = [TaskStarted(**ids)]
    if verdict == "hang":
        return started  # its attempt timeout ends it
    head = started if draw(st.booleans()) else []
    if verdict == "ok":
        output = {"i": dispatch.item} if dispatch.item is not None else None
        return [*head, TaskCompleted(**ids, output=output)]
    error = ErrorInfo(type="Fatal" if verdict == "fatal" else "IOError", message="x")
    return [*head, TaskFailed(**ids, error=error)]


def random_step(world: World, draw: st.DrawFn) -> None:
    """One thing happens: a delivery, a duplicate, a timer, a ghost, or run control."""
    choices = ["control"]
    if world.inbox:
        choices += ["deliver", "deliver", "deliver"]
    if world.delivered:
        choices.append("duplicate")
    if world.timers:
        choices.append("timer")
    if world.ghosts:
        choices.append("ghost")
    choice = draw(st.sampled_from(choices))
    world.run.advance(0.001)
    if choice == "deliver":
        world.apply(world.inbox.pop(draw(st.integers(0, len(world.inbox) - 1))))
    elif choice == "duplicate":
        world.apply(draw(st.sampled_from(world.delivered)))
    elif choice == "timer":
        world.fire(draw(st.sampled_from(sorted(world.timers, key=str))))
    elif choice == "ghost":
        kind, task_id, attempt, item = draw(st.sampled_from(world.ghosts))
        world.apply(TimerFired(run_id=R, kind=kind, task_id=task_id, attempt=attempt, item=item))
    else:
        control(world, draw)


def control(world: World, draw: st.DrawFn) -> None:
    """Pause, resume, a lost dispatch, rarely a cancel, and a retry of a failed run."""
    kind = draw(st.sampled_from(["pause", "resume", "resume", "lost", "cancel", "retry"]))
    if kind == "pause":
        world.apply(PauseRequested(run_id=R))
    elif kind == "resume":
        world.apply(ResumeRequested(run_id=R))
    elif kind == "lost" and world.dispatches:
        sent = draw(st.sampled_from(world.dispatches))
        world.apply(
            DispatchLost(run_id=R, task_id=sent.task_id, attempt=sent.attempt, item=sent.item)
        )
    elif kind == "cancel" and draw(st.integers(0, 4)) == 0:
        world.apply(CancelRequested(run_id=R, reason="random"))
    elif kind == "retry" and world.retries < 2:
        world.retries += 1
        world.apply(RetryRequested(run_id=R))


def take_dispatches(world: World, draw: st.DrawFn) -> None:
    for dispatch in world.dispatches:
        can_lose = _has_schedule_to_start(world, dispatch)
        world.inbox.extend(outcomes(draw, dispatch, can_lose=can_lose))
    world.dispatches.clear()


def _has_schedule_to_start(world: World, dispatch: DispatchTask) -> bool:
    """Whether a lost copy of this dispatch is sent again (the task's or the item's limit)."""
    compiled = world.run.workflow.tasks[dispatch.task_id]
    sent = compiled.map_task if dispatch.item is not None else compiled
    return sent is not None and sent.schedule_to_start_seconds is not None


def drain(world: World, draw: st.DrawFn) -> None:
    """Let the world settle (resuming, and retrying a failure), so every run must end."""
    for _ in range(2000):
        take_dispatches(world, draw)
        if world.run.state.status is RunStatus.FAILED and world.retries < 2:
            world.retries += 1
            world.apply(RetryRequested(run_id=R))
        elif world.run.state.status.is_terminal:
            return
        elif world.run.state.paused:
            world.apply(ResumeRequested(run_id=R))
        elif world.inbox:
            world.apply(world.inbox.pop(0))
        elif world.timers:
            world.fire(min(world.timers, key=lambda k: world.timers[k]))
        else:
            return


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(definition=maps(), data=st.data())
def test_every_map_run_ends_with_each_item_ended_once_under_its_cap(
    definition: tuple[dict[str, Any], list[int]], data: st.DataObject
) -> None:
    """Under reordering, duplicates, late timers, pauses, cancels and retries, maps end well."""
    tasks, values = definition
    run = ItemRun(workflow(tasks), values)
    world = World(run=run, concurrency=tasks["m"]["concurrency"])
    world.apply(RunStarted(run_id=R))
    for _ in range(data.draw(st.integers(0, 120))):
        take_dispatches(world, data.draw)
        if world.run.state.status.is_terminal and world.retries >= 2:
            break
        random_step(world, data.draw)
    drain(world, data.draw)
    event(f"run {world.run.state.status.value}")
    assert world.run.state.status.is_terminal, "the run never ended"
    assert len(world.run.items) in (0, len(values))
    assert all(item.status.is_terminal for item in world.run.items.values())
    if world.run.state.status is RunStatus.COMPLETED:
        outputs = [world.run.item("m", i).output for i in range(len(values))]
        assert world.run.state.tasks["m"].output == outputs
        assert all(item.status is TaskStatus.COMPLETED for item in world.run.items.values())
    assert msgspec.json.encode(world.run.state)  # the final state still serialises
