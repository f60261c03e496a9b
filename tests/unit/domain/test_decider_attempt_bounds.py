"""Bounds on one attempt's sends: recovery counts deliveries, schedule-to-start gives up."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import Run, workflow
from treadle.domain._redispatch import MAX_RESENDS
from treadle.domain.events import (
    CancelTimer,
    Decision,
    DispatchLost,
    DispatchTask,
    RunStarted,
    StartTimer,
    TaskFailed,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

R = "r1"
DUE = TimerKind.DISPATCH_TIMEOUT
BOOM = ErrorInfo(type="IOError", message="boom")


def started(task: dict[str, Any]) -> Run:
    run = Run(workflow({"a": task}))
    run.apply(RunStarted(run_id=R))
    return run


def dispatches(run: Run | Decision) -> list[DispatchTask]:
    return [c for c in run.commands if isinstance(c, DispatchTask)]


def timers(run: Run, kind: TimerKind) -> list[StartTimer]:
    return [c for c in run.commands if isinstance(c, StartTimer) and c.kind is kind]


def fire_next(run: Run) -> bool:
    """Fire the timer the last decision started (schedule-to-start or retry); False if none."""
    started_timers = timers(run, DUE) + timers(run, TimerKind.RETRY)
    if not started_timers:
        return False
    (timer,) = started_timers
    fire(run, timer)
    return True


def fire(run: Run, timer: StartTimer) -> None:
    run.now = max(run.now, timer.fire_at)
    run.apply(
        TimerFired(
            run_id=R, kind=timer.kind, task_id=timer.task_id, attempt=timer.attempt, item=timer.item
        )
    )


class Timers:
    """The durable timers of one run, kept as the store keeps them (by kind and attempt)."""

    def __init__(self) -> None:
        self.due: dict[tuple[TimerKind, int], StartTimer] = {}

    def take(self, decision: Decision) -> None:
        for command in decision.commands:
            if isinstance(command, StartTimer):
                self.due[(command.kind, command.attempt)] = command
            elif isinstance(command, CancelTimer):
                self.due.pop((command.kind, command.attempt), None)

    def pop_earliest(self) -> StartTimer | None:
        if not self.due:
            return None
        key = min(self.due, key=lambda k: self.due[k].fire_at)
        return self.due.pop(key)


# --- start-up recovery counts deliveries ----------------------------------------------


def test_each_recovery_send_carries_one_more_delivery() -> None:
    """DispatchLost re-sends the same attempt as delivery 2, then 3, and records it."""
    run = started({"handler": "h"})
    assert [d.delivery for d in dispatches(run)] == [1]
    for expected in (2, 3):
        run.apply(DispatchLost(run_id=R, task_id="a", attempt=1))
        assert [(d.attempt, d.delivery) for d in dispatches(run)] == [(1, expected)]
        assert run.state.tasks["a"].delivery == expected
        assert run.history[0].data["delivery"] == expected


def test_a_new_attempt_starts_at_delivery_one() -> None:
    """The retry of an attempt delivered three times is sent as delivery 1 of attempt 2."""
    run = started({"handler": "h", "retry": {"max_attempts": 2}})
    run.apply(DispatchLost(run_id=R, task_id="a", attempt=1))
    run.apply(DispatchLost(run_id=R, task_id="a", attempt=1))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
    assert [(d.attempt, d.delivery) for d in dispatches(run)] == [(2, 1)]
    assert run.state.tasks["a"].delivery == 1


def test_an_item_recovery_send_carries_one_more_delivery() -> None:
    """A map item re-sent by recovery is delivery 2 of its attempt; the other items keep 1."""
    template = {"handler": "h", "input": "${ item }"}
    run = ItemRun(workflow({"m": {"type": "map", "items": "${ input }", "task": template}}), [1, 2])
    run.apply(RunStarted(run_id=R))
    run.apply(DispatchLost(run_id=R, task_id="m", attempt=1, item=1))
    assert [(d.item, d.delivery) for d in dispatches(run)] == [(1, 2)]
    assert (run.items[("m", 0)].delivery, run.items[("m", 1)].delivery) == (1, 2)


# --- schedule-to-start gives up ----------------------------------------------------------


def test_an_attempt_no_worker_starts_times_out_after_its_resends() -> None:
    """After MAX_RESENDS re-sends the next check fails the attempt: ScheduleToStartTimeout."""
    run = started({"handler": "h", "schedule_to_start_timeout": "10s"})
    for _ in range(MAX_RESENDS):
        assert fire_next(run)
        assert run.kinds() == ["task.redispatched"]
    assert fire_next(run)
    assert dispatches(run) == []
    assert run.kinds()[0] == "task.timed_out"
    task = run.state.tasks["a"]
    assert task.status is TaskStatus.TIMED_OUT
    assert task.error is not None
    assert task.error.type == "ScheduleToStartTimeout"
    assert "150s" in task.error.message, "15 limits after the dispatch"
    assert run.state.status is RunStatus.FAILED
    assert not fire_next(run), "no timer is left behind"


def test_the_timeout_follows_the_retry_policy_with_fresh_resends() -> None:
    """With attempts left, the timed-out attempt is retried and the next one gets its own
    re-sends before it, too, gives up."""
    run = started({"handler": "h", "schedule_to_start_timeout": "1s", "retry": {"max_attempts": 2}})
    sent = [(d.attempt, d.delivery) for d in dispatches(run)]
    while fire_next(run):
        sent += [(d.attempt, d.delivery) for d in dispatches(run)]
    assert sent == [(1, 1)] * (MAX_RESENDS + 1) + [(2, 1)] * (MAX_RESENDS + 1)
    assert run.state.tasks["a"].status is TaskStatus.TIMED_OUT
    assert run.state.tasks["a"].attempt == 2
    assert run.state.status is RunStatus.FAILED


def test_an_item_no_worker_starts_times_out_and_fails_the_map() -> None:
    """An item re-sent MAX_RESENDS times then times out; fail_fast ends the map and the run."""
    template = {"handler": "h", "input": "${ item }", "schedule_to_start_timeout": "2s"}
    run = ItemRun(workflow({"m": {"type": "map", "items": "${ input }", "task": template}}), [1])
    run.apply(RunStarted(run_id=R))
    resent = 0
    while fire_next(run):
        resent += len(dispatches(run))
    assert resent == MAX_RESENDS
    item = run.items[("m", 0)]
    assert item.status is TaskStatus.TIMED_OUT
    assert item.error is not None
    assert item.error.type == "ScheduleToStartTimeout"
    assert run.state.status is RunStatus.FAILED


@settings(max_examples=40, deadline=None)
@given(
    max_attempts=st.integers(min_value=1, max_value=4),
    limit=st.integers(min_value=1, max_value=7200),
    lost=st.lists(st.booleans(), max_size=12),
)
def test_every_unstarted_attempt_ends_after_a_bounded_number_of_sends(
    max_attempts: int, limit: int, lost: list[bool]
) -> None:
    """Whatever the limit and any recovery re-sends in between, a task no worker starts sends
    each attempt at most MAX_RESENDS + 1 times by schedule-to-start, and the run ends."""
    task = {"handler": "h", "schedule_to_start_timeout": f"{limit}s"}
    run = started({**task, "retry": {"max_attempts": max_attempts, "initial_interval": "1s"}})
    sends: dict[int, int] = {1: 1}
    recoveries = 0
    kept = Timers()
    kept.take(run.last)
    while True:
        if lost and lost.pop():
            attempt = run.state.tasks["a"].attempt
            kept.take(run.apply(DispatchLost(run_id=R, task_id="a", attempt=attempt)))
            recoveries += len(dispatches(run))
        timer = kept.pop_earliest()
        if timer is None:
            break
        fire(run, timer)
        kept.take(run.last)
        for dispatch in dispatches(run):
            sends[dispatch.attempt] = sends.get(dispatch.attempt, 0) + 1
        assert sum(sends.values()) < 100 * max_attempts, "the sends never stopped"
    assert run.state.status is RunStatus.FAILED
    assert sorted(sends) == list(range(1, max_attempts + 1))
    assert sum(sends.values()) <= max_attempts * (MAX_RESENDS + 1) + recoveries
