"""Schedule-to-start in the decider: a dispatch that never started is sent again."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import Run, workflow
from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.events import (
    CancelRequested,
    CancelTimer,
    Command,
    DispatchLost,
    DispatchTask,
    RunStarted,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

R = "r1"
DUE = TimerKind.DISPATCH_TIMEOUT
BOOM = ErrorInfo(type="IOError", message="boom")


def started(tasks: dict[str, Any], **compile_options: Any) -> Run:
    definition = parse_definition({"name": "w", "tasks": tasks})
    run = Run(compile_workflow(definition, **compile_options), run_input=[1, 2])
    run.apply(RunStarted(run_id=R))
    return run


def due_timers(commands: list[Command]) -> list[StartTimer | CancelTimer]:
    """The schedule-to-start timers a decision started or cancelled."""
    return [c for c in commands if isinstance(c, StartTimer | CancelTimer) and c.kind is DUE]


def dispatches(commands: list[Command]) -> list[DispatchTask]:
    return [c for c in commands if isinstance(c, DispatchTask)]


def fire(run: Run, task_id: str = "a", attempt: int = 1, item: int | None = None) -> None:
    run.apply(TimerFired(run_id=R, kind=DUE, task_id=task_id, attempt=attempt, item=item))


def test_a_dispatch_arms_the_timer_when_the_task_sets_a_limit() -> None:
    """Dispatching an attempt starts its DISPATCH_TIMEOUT at now + the task's limit."""
    run = started({"a": {"handler": "h", "schedule_to_start_timeout": "5s"}})
    fire_at = run.now + timedelta(seconds=5)
    assert due_timers(run.commands) == [
        StartTimer(run_id=R, kind=DUE, task_id="a", attempt=1, fire_at=fire_at)
    ]


def test_the_config_default_applies_and_the_task_limit_wins() -> None:
    """The compile default arms tasks without a limit; a task's own limit takes precedence."""
    tasks = {"a": {"handler": "h"}, "b": {"handler": "h", "schedule_to_start_timeout": "1m"}}
    run = started(tasks, default_schedule_to_start=7.0)
    waits = {t.task_id: t.fire_at - run.now for t in due_timers(run.commands)}
    assert waits == {"a": timedelta(seconds=7), "b": timedelta(minutes=1)}


def test_without_a_limit_no_timer_is_ever_written() -> None:
    """Off by default: dispatch, start, retry and completion write no schedule-to-start timer."""
    run = started({"a": {"handler": "h", "retry": {"max_attempts": 2}}})
    seen = list(run.commands)
    for event in (
        TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM),
        TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2),
        TaskStarted(run_id=R, task_id="a", attempt=2),
        TaskCompleted(run_id=R, task_id="a", attempt=2),
    ):
        run.apply(event)
        seen += run.commands
    assert run.state.status is RunStatus.COMPLETED
    assert due_timers(seen) == []


def test_the_start_cancels_the_timer() -> None:
    """TaskStarted drops the schedule-to-start timer as it arms the start-to-close one."""
    run = started({"a": {"handler": "h", "schedule_to_start_timeout": "5s", "timeout": "1m"}})
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    assert due_timers(run.commands) == [CancelTimer(run_id=R, kind=DUE, task_id="a", attempt=1)]
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert due_timers(run.commands) == [], "the start already cancelled it"


def test_a_result_without_a_start_cancels_the_timer() -> None:
    """A completion or failure whose start never arrived drops the timer too."""
    tasks = {"a": {"handler": "h", "schedule_to_start_timeout": "5s"}}
    run = started({**tasks, "b": {"handler": "h", "schedule_to_start_timeout": "5s"}})
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert due_timers(run.commands) == [CancelTimer(run_id=R, kind=DUE, task_id="a", attempt=1)]
    run.apply(TaskFailed(run_id=R, task_id="b", attempt=1, error=BOOM))
    assert CancelTimer(run_id=R, kind=DUE, task_id="b", attempt=1) in run.commands


def test_firing_redispatches_the_same_attempt_and_doubles_the_wait() -> None:
    """An unstarted attempt is sent again as is, recorded, and checked after twice the wait."""
    run = started({"a": {"handler": "h", "input": {"x": 1}, "schedule_to_start_timeout": "5s"}})
    (first,) = dispatches(run.commands)
    waits = []
    for _ in range(3):
        timer = due_timers(run.commands)[0]
        assert isinstance(timer, StartTimer)
        run.now = timer.fire_at
        fire(run)
        assert dispatches(run.commands) == [first]
        assert run.kinds() == ["task.redispatched"]
        waits.append(run.history[0].data["next_check_seconds"])
    assert waits == [10.0, 20.0, 40.0]
    assert run.history[0].data == {
        "queue": "default",
        "waited_seconds": 35.0,
        "next_check_seconds": 40.0,
    }
    assert run.status("a") == "scheduled"
    assert run.state.tasks["a"].attempt == 1


def test_the_wait_between_checks_is_capped_at_an_hour() -> None:
    """A long limit doubles only up to one hour between checks."""
    run = started({"a": {"handler": "h", "schedule_to_start_timeout": "40m"}})
    run.advance(40 * 60)
    fire(run)
    (timer,) = due_timers(run.commands)
    assert timer == StartTimer(
        run_id=R, kind=DUE, task_id="a", attempt=1, fire_at=run.now + timedelta(hours=1)
    )


def test_a_late_fire_after_the_start_or_the_end_changes_nothing() -> None:
    """A timer that fires once the attempt started, finished or was retried is stale."""
    tasks = {"a": {"handler": "h", "schedule_to_start_timeout": "5s", "retry": {"max_attempts": 2}}}
    run = started({**tasks, "b": {"handler": "h", "schedule_to_start_timeout": "5s"}})
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="a", attempt=1)).changed
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    assert run.status("a") == "scheduled", "waiting out its backoff"
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="a", attempt=1)).changed
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="a", attempt=2)).changed
    run.apply(TaskCompleted(run_id=R, task_id="b", attempt=1))
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="b", attempt=1)).changed


def test_a_retry_and_a_lost_dispatch_arm_the_timer_for_their_attempt() -> None:
    """The retry's dispatch arms attempt 2's timer; a DispatchLost re-send re-arms it."""
    task = {"handler": "h", "schedule_to_start_timeout": "5s", "retry": {"max_attempts": 2}}
    run = started({"a": task})
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
    assert [(t.attempt, type(t)) for t in due_timers(run.commands)] == [(2, StartTimer)]
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=2))
    run.apply(DispatchLost(run_id=R, task_id="a", attempt=2))
    assert [(t.attempt, type(t)) for t in due_timers(run.commands)] == [(2, StartTimer)]


def test_cancelling_the_run_cancels_the_timer_of_an_unstarted_attempt() -> None:
    """Finishing the run drops the schedule-to-start timer of a task still scheduled."""
    run = started({"a": {"handler": "h", "schedule_to_start_timeout": "5s"}})
    run.apply(CancelRequested(run_id=R))
    assert CancelTimer(run_id=R, kind=DUE, task_id="a", attempt=1) in run.commands
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="a", attempt=1)).changed


def test_a_limit_turned_off_since_the_dispatch_makes_the_timer_stale() -> None:
    """A timer left from when the limit was on re-sends nothing once it is off."""
    run = started({"a": {"handler": "h"}})
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="a", attempt=1)).changed


# --- map items ------------------------------------------------------------------------


def map_run(limit: str = "5s") -> ItemRun:
    template = {"handler": "h", "input": "${ item }", "schedule_to_start_timeout": limit}
    wf = workflow({"m": {"type": "map", "items": "${ input }", "task": template}})
    run = ItemRun(wf, [10, 20])
    run.apply(RunStarted(run_id=R))
    return run


def test_each_item_dispatch_arms_its_own_timer() -> None:
    """Items get a timer keyed by their index; an item's start cancels only its own."""
    run = map_run()
    assert [(t.item, type(t)) for t in due_timers(run.commands)] == [
        (0, StartTimer),
        (1, StartTimer),
    ]
    run.apply(TaskStarted(run_id=R, task_id="m", attempt=1, item=1))
    assert due_timers(run.commands) == [
        CancelTimer(run_id=R, kind=DUE, task_id="m", attempt=1, item=1)
    ]


def test_an_unstarted_item_is_redispatched_and_a_started_one_is_not() -> None:
    """Firing on an unstarted item re-sends the same item attempt; on a started one, nothing."""
    run = map_run()
    run.apply(TaskStarted(run_id=R, task_id="m", attempt=1, item=1))
    run.advance(5)
    fire(run, "m", item=0)
    (again,) = dispatches(run.commands)
    assert (again.item, again.attempt, again.input) == (0, 1, 10)
    assert run.kinds() == ["item.redispatched"]
    assert run.history[0].data["next_check_seconds"] == 10.0
    (timer,) = due_timers(run.commands)
    assert (timer.item, timer.fire_at) == (0, run.now + timedelta(seconds=10))
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="m", attempt=1, item=1)).changed
    run.apply(TaskCompleted(run_id=R, task_id="m", attempt=1, item=0))
    assert CancelTimer(run_id=R, kind=DUE, task_id="m", attempt=1, item=0) in run.commands
    assert run.item("m", 0).status is TaskStatus.COMPLETED
    assert not run.apply(TimerFired(run_id=R, kind=DUE, task_id="m", attempt=1, item=0)).changed
