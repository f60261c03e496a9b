"""A result that carries its attempt's start (`started_at`): a quick attempt's one message.

The decider takes it as the start (the `task.started` rule) then the result, in one
decision; a start that is already decided, stale or late changes nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import msgspec
import pytest

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import START, Run, workflow
from treadle.domain.decider import decide
from treadle.domain.events import (
    CancelTimer,
    Command,
    DispatchTask,
    RunStarted,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.keys import TimerKey
from treadle.domain.state import ErrorInfo, TaskStatus

R = "r1"
BOOM = ErrorInfo(type="IOError", message="boom")
BEGAN = START + timedelta(milliseconds=3)
# A handler task with every timer an attempt can have: schedule-to-start, start-to-close
# and heartbeat.
TIMED = {
    "handler": "h",
    "timeout": "30s",
    "heartbeat_timeout": "10s",
    "schedule_to_start_timeout": "5s",
    "retry": {"max_attempts": 2, "initial_interval": "1s"},
}


def dispatched(task: dict[str, Any] | None = None) -> Run:
    """A started run of `a` (then `b` after it) whose first attempt of `a` is scheduled."""
    run = Run(workflow({"a": task or TIMED, "b": {"handler": "h", "after": ["a"]}}))
    run.apply(RunStarted(run_id=R))
    run.advance(1)
    return run


def completed(attempt: int = 1, **fields: Any) -> TaskCompleted:
    return TaskCompleted(run_id=R, task_id="a", attempt=attempt, output=7, worker="w-7", **fields)


def failed(attempt: int = 1, **fields: Any) -> TaskFailed:
    return TaskFailed(run_id=R, task_id="a", attempt=attempt, error=BOOM, worker="w-7", **fields)


def timer_kinds(commands: list[Command], kind: type[StartTimer | CancelTimer]) -> list[TimerKind]:
    return [c.kind for c in commands if isinstance(c, kind)]


def test_a_completion_carrying_its_start_records_the_start_then_the_end() -> None:
    """One decision: the task ran from `started_at` to now, its history shows both, in
    order, the next task goes out, and no timer of the finished attempt is left armed."""
    run = dispatched()
    run.apply(completed(started_at=BEGAN))
    task = run.state.tasks["a"]
    assert (task.status, task.started_at, task.finished_at) == (
        TaskStatus.COMPLETED,
        BEGAN,
        run.now,
    )
    assert run.kinds()[:2] == ["task.started", "task.completed"]
    assert run.history[0].data == {"worker": "w-7"}
    assert [(h.task_id, h.attempt) for h in run.history[:2]] == [("a", 1), ("a", 1)]
    assert [d.task_id for d in run.commands if isinstance(d, DispatchTask)] == ["b"]
    assert timer_kinds(run.commands, StartTimer) == []
    assert set(timer_kinds(run.commands, CancelTimer)) == {
        TimerKind.DISPATCH_TIMEOUT,
        TimerKind.ATTEMPT_TIMEOUT,
        TimerKind.HEARTBEAT_TIMEOUT,
    }


@pytest.mark.parametrize(
    "result",
    [completed(started_at=BEGAN), failed(started_at=BEGAN)],
    ids=["completed", "failed"],
)
@pytest.mark.parametrize("retried", [False, True], ids=["first", "last-attempt"])
def test_it_decides_as_the_start_and_then_the_result_would(
    result: TaskCompleted | TaskFailed, retried: bool
) -> None:
    """Same state and history as `task.started` then the result on their own; the same
    commands, less the timers the start arms that the result drops again."""
    run = dispatched()
    if retried:  # the last attempt allowed: its failure ends the run
        run.apply(failed())
        run.advance(1)
        run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
        result = msgspec.structs.replace(result, attempt=2)
    start = TaskStarted(
        run_id=R, task_id="a", attempt=result.attempt, worker="w-7", started_at=BEGAN
    )
    alone = msgspec.structs.replace(result, started_at=None)
    first = decide(run.workflow, run.state, start, run.now)
    second = decide(run.workflow, first.state, alone, run.now)

    together = run.apply(result)

    assert together.state == second.state
    assert together.history == [*first.history, *second.history]
    dropped = {c.timer_key for c in second.commands if isinstance(c, CancelTimer)}
    kept = [c for c in first.commands if not _started_then_dropped(c, dropped)]
    assert together.commands == [*kept, *second.commands]
    assert len(kept) < len(first.commands), "the start armed timers the result dropped"


def test_a_failure_carrying_its_start_is_retried_after_a_recorded_start() -> None:
    """A quick failure with retries left: started, failed, retry scheduled, in one decision."""
    run = dispatched()
    run.apply(failed(started_at=BEGAN))
    assert run.kinds() == ["task.started", "task.failed", "task.retry_scheduled"]
    task = run.state.tasks["a"]
    assert (task.status, task.attempt, task.started_at) == (TaskStatus.SCHEDULED, 2, None)
    assert timer_kinds(run.commands, StartTimer) == [TimerKind.RETRY]


def test_a_start_already_decided_is_not_decided_again() -> None:
    """For an attempt already running (its start came on its own, or from an earlier
    delivery) the carried start is ignored: the first start time and entry stand."""
    run = dispatched()
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1, worker="w-1", started_at=START))
    run.advance(1)
    run.apply(completed(started_at=BEGAN))
    assert run.kinds()[0] == "task.completed"
    assert "task.started" not in run.kinds()
    assert run.state.tasks["a"].started_at == START
    assert run.state.tasks["a"].status is TaskStatus.COMPLETED


def test_a_start_arriving_after_the_result_that_carried_it_changes_nothing() -> None:
    """The broker may redeliver or reorder: a late `task.started`, or the same result
    again, is stale once the result is decided."""
    run = dispatched()
    run.apply(completed(started_at=BEGAN))
    ended = run.state
    assert not run.apply(TaskStarted(run_id=R, task_id="a", attempt=1, started_at=BEGAN)).changed
    assert not run.apply(completed(started_at=BEGAN)).changed
    assert run.state is ended


def test_a_result_with_its_start_for_a_stale_attempt_changes_nothing() -> None:
    """An old attempt's quick result (it failed and was retried meanwhile) is ignored whole."""
    run = dispatched()
    run.apply(failed())
    waiting = run.state
    assert not run.apply(completed(attempt=1, started_at=BEGAN)).changed
    assert not run.apply(completed(attempt=3, started_at=BEGAN)).changed
    assert run.state is waiting


def test_a_map_item_result_carrying_its_start_records_the_item_start_then_end() -> None:
    """The same for one item of a map: its start, then its end, in one decision, and
    none of its attempt's timers left armed."""
    task = {"handler": "h", "timeout": "30s", "heartbeat_timeout": "10s"}
    wf = workflow({"m": {"type": "map", "items": "${ input }", "task": task}})
    run = ItemRun(wf, [1, 2])
    run.apply(RunStarted(run_id=R))
    run.advance(1)
    result = TaskCompleted(
        run_id=R, task_id="m", attempt=1, item=0, output="x", worker="w-7", started_at=BEGAN
    )
    run.apply(result)
    item = run.item("m", 0)
    assert (item.status, item.started_at, item.output) == (TaskStatus.COMPLETED, BEGAN, "x")
    assert run.kinds() == ["item.started", "item.completed"]
    assert run.history[0].data == {"item": 0, "worker": "w-7"}
    assert timer_kinds(run.commands, StartTimer) == []
    assert set(timer_kinds(run.commands, CancelTimer)) == {
        TimerKind.ATTEMPT_TIMEOUT,
        TimerKind.HEARTBEAT_TIMEOUT,
    }
    late = TaskStarted(run_id=R, task_id="m", attempt=1, item=0, started_at=BEGAN)
    assert not run.apply(late).changed
    assert not run.apply(result).changed


def test_a_map_item_already_running_keeps_its_own_start() -> None:
    """An item whose start was decided on its own ignores the start its result carries."""
    wf = workflow({"m": {"type": "map", "items": "${ input }", "task": {"handler": "h"}}})
    run = ItemRun(wf, [1])
    run.apply(RunStarted(run_id=R))
    run.apply(TaskStarted(run_id=R, task_id="m", attempt=1, item=0, started_at=START))
    run.advance(1)
    run.apply(TaskCompleted(run_id=R, task_id="m", attempt=1, item=0, started_at=BEGAN))
    assert "item.started" not in run.kinds()
    assert run.item("m", 0).started_at == START
    assert run.item("m", 0).status is TaskStatus.COMPLETED


def _started_then_dropped(command: Command, dropped: set[TimerKey]) -> bool:
    return isinstance(command, StartTimer) and command.timer_key in dropped
