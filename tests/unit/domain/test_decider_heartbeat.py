"""Heartbeats, heartbeat timeouts, and the `task.cancel` the decider sends to workers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import START, Run, workflow
from treadle.domain._heartbeat import MAX_DETAILS_BYTES
from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid
from treadle.domain.events import (
    CancelAttempts,
    CancelRequested,
    CancelTimer,
    DispatchTask,
    RunFinished,
    RunStarted,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, Heartbeat, RunStatus, TaskStatus

R = "r1"
HB = TimerKind.HEARTBEAT_TIMEOUT


def running(task: dict[str, Any], **others: Any) -> Run:
    """A run of task `a` (and `others`) whose first attempt of `a` has started."""
    run = Run(workflow({"a": task, **others}))
    run.apply(RunStarted(run_id=R))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    return run


def timers(run: Run, kind: TimerKind) -> list[StartTimer]:
    return [c for c in run.commands if isinstance(c, StartTimer) and c.kind is kind]


def cancels(run: Run) -> list[CancelAttempts]:
    return [c for c in run.commands if isinstance(c, CancelAttempts)]


def beat(attempt: int = 1, details: Any = None, item: int | None = None) -> TaskHeartbeat:
    return TaskHeartbeat(run_id=R, task_id="a", attempt=attempt, details=details, item=item)


def definition_issues(task: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition({"name": "w", "tasks": {"a": task}}))
    return [str(issue) for issue in caught.value.issues]


def test_heartbeat_timeout_is_a_checked_duration_of_handler_tasks_only() -> None:
    """`heartbeat_timeout` compiles to seconds on a handler; elsewhere, or bad, it is refused."""
    wf = workflow({"a": {"handler": "h", "heartbeat_timeout": "1m30s"}})
    assert wf.tasks["a"].heartbeat_timeout_seconds == 90
    http = {"type": "http", "request": {"url": "http://127.0.0.1/"}, "heartbeat_timeout": "5s"}
    assert definition_issues(http) == ["tasks.a.heartbeat_timeout: not allowed on a http task"]
    assert definition_issues({"handler": "h", "heartbeat_timeout": "soon"})[0].startswith(
        "tasks.a.heartbeat_timeout:"
    )
    assert definition_issues({"handler": "h", "heartbeat_timeout": 0}) == [
        "tasks.a.heartbeat_timeout: must be longer than zero"
    ]


def test_the_start_arms_the_heartbeat_timer_and_the_dispatch_carries_the_limit() -> None:
    """A handler task with a heartbeat limit: its dispatch says so, its start arms the timer."""
    run = Run(workflow({"a": {"handler": "h", "heartbeat_timeout": "30s"}}))
    run.apply(RunStarted(run_id=R))
    (dispatch,) = [c for c in run.commands if isinstance(c, DispatchTask)]
    assert dispatch.heartbeat_timeout_seconds == 30
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    assert timers(run, HB) == [
        StartTimer(run_id=R, kind=HB, task_id="a", attempt=1, fire_at=START + timedelta(seconds=30))
    ]


def test_a_heartbeat_keeps_its_details_and_moves_the_timer_without_history() -> None:
    """Each heartbeat of the running attempt is kept on the task and pushes the timer on."""
    run = running({"handler": "h", "heartbeat_timeout": "30s"})
    run.advance(20)
    decision = run.apply(beat(details={"done": 3}))
    assert decision.changed
    assert run.history == []
    assert run.state.tasks["a"].heartbeat == Heartbeat(at=run.now, attempt=1, details={"done": 3})
    assert [t.fire_at for t in timers(run, HB)] == [run.now + timedelta(seconds=30)]


def test_heartbeats_are_kept_without_a_heartbeat_timeout_too() -> None:
    """With no limit set a heartbeat still records its details (and starts no timer)."""
    run = running({"handler": "h"})
    assert run.apply(beat(details="half way")).changed
    assert run.commands == []
    heartbeat = run.state.tasks["a"].heartbeat
    assert heartbeat is not None
    assert heartbeat.details == "half way"


def test_stale_or_early_heartbeats_change_nothing() -> None:
    """A heartbeat of an old attempt, or of one whose start is not decided, is ignored."""
    run = running({"handler": "h", "heartbeat_timeout": "30s"})
    assert not run.apply(beat(attempt=2)).changed
    fresh = Run(workflow({"a": {"handler": "h", "heartbeat_timeout": "30s"}}))
    fresh.apply(RunStarted(run_id=R))
    assert not fresh.apply(beat()).changed


def test_oversized_details_are_dropped_but_the_beat_counts() -> None:
    """Details larger than the bound are not kept; the heartbeat still moves the timer."""
    run = running({"handler": "h", "heartbeat_timeout": "30s"})
    run.apply(beat(details="x" * MAX_DETAILS_BYTES))
    heartbeat = run.state.tasks["a"].heartbeat
    assert heartbeat is not None
    assert heartbeat.details is None
    assert timers(run, HB)


def test_a_silent_attempt_times_out_with_heartbeat_timeout_and_is_retried() -> None:
    """The heartbeat timer firing fails the attempt (HeartbeatTimeout), retries it, stops it."""
    retry = {"max_attempts": 2, "initial_interval": "1s"}
    run = running({"handler": "h", "heartbeat_timeout": "10s", "timeout": "1h", "retry": retry})
    run.advance(10)
    run.apply(TimerFired(run_id=R, kind=HB, task_id="a", attempt=1))
    assert run.kinds() == ["task.timed_out", "task.retry_scheduled"]
    assert run.state.tasks["a"].error == ErrorInfo(
        type="HeartbeatTimeout",
        message="attempt 1 sent no heartbeat for 10s (its heartbeat_timeout)",
    )
    cancelled = {(c.kind, c.attempt) for c in run.commands if isinstance(c, CancelTimer)}
    assert (TimerKind.ATTEMPT_TIMEOUT, 1) in cancelled
    assert [(c.task_id, c.attempt) for c in cancels(run)] == [("a", 1)]
    assert not run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output="late")).changed
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=2))
    run.apply(TimerFired(run_id=R, kind=HB, task_id="a", attempt=2))
    assert run.status("a") == "timed_out"
    assert run.state.status is RunStatus.FAILED


def test_a_heartbeat_timeout_after_the_result_is_stale() -> None:
    """A result drops the heartbeat timer; if it fires anyway it changes nothing."""
    run = running({"handler": "h", "heartbeat_timeout": "10s"}, b={"handler": "h"})
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert CancelTimer(run_id=R, kind=HB, task_id="a", attempt=1) in run.commands
    assert not run.apply(TimerFired(run_id=R, kind=HB, task_id="a", attempt=1)).changed


def test_a_start_to_close_timeout_tells_the_worker_to_stop_the_attempt() -> None:
    """A timed-out attempt is abandoned: its heartbeat timer goes and its worker is told."""
    run = running({"handler": "h", "heartbeat_timeout": "10s", "timeout": "20s"})
    run.apply(TimerFired(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="a", attempt=1))
    assert CancelTimer(run_id=R, kind=HB, task_id="a", attempt=1) in run.commands
    assert [(c.task_id, c.attempt, c.item) for c in cancels(run)] == [("a", 1, None)]


def test_cancelling_a_run_with_attempts_out_tells_the_workers_once() -> None:
    """A run that ends with attempts running sends one `task.cancel` naming the run."""
    run = running({"handler": "h", "heartbeat_timeout": "10s"}, b={"handler": "h"})
    run.apply(CancelRequested(run_id=R, reason="operator"))
    assert cancels(run) == [CancelAttempts(run_id=R, reason="the run ended cancelled")]
    assert CancelTimer(run_id=R, kind=HB, task_id="a", attempt=1) in run.commands
    assert run.commands[-1] == RunFinished(run_id=R, status=RunStatus.CANCELLED)


def test_a_run_that_ends_with_nothing_out_sends_no_cancel() -> None:
    """No attempt is out (the task waits for its backoff): no `task.cancel` is broadcast."""
    retry = {"max_attempts": 3}
    run = running({"handler": "h", "retry": retry})
    boom = ErrorInfo(type="IOError", message="boom")
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=boom))
    run.apply(CancelRequested(run_id=R))
    assert run.state.status is RunStatus.CANCELLED
    assert cancels(run) == []


def test_a_failing_task_stops_the_other_running_attempts_of_its_run() -> None:
    """When one task fails the run, the attempts still running elsewhere are cancelled."""
    run = running({"handler": "h"}, b={"handler": "h"})
    boom = ErrorInfo(type="IOError", message="boom", retryable=False)
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=boom))
    assert run.status("b") == "cancelled"
    assert cancels(run) == [CancelAttempts(run_id=R, reason="the run ended failed")]


def map_run(template: dict[str, Any], items: list[Any], **fields: Any) -> ItemRun:
    wf = workflow({"a": {"type": "map", "items": "${ input }", "task": template, **fields}})
    run = ItemRun(wf, items)
    run.apply(RunStarted(run_id=R))
    return run


def test_map_items_heartbeat_and_time_out_one_by_one() -> None:
    """A map item keeps its heartbeat; its silence fails and retries that item alone."""
    template = {"handler": "h", "heartbeat_timeout": "5s", "retry": {"max_attempts": 2}}
    run = map_run(template, [1, 2])
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1, item=1))
    assert [(t.item, t.attempt) for t in timers(run, HB)] == [(1, 1)]
    run.apply(beat(details={"p": 1}, item=1))
    item = run.item("a", 1)
    assert item.heartbeat == Heartbeat(at=run.now, attempt=1, details={"p": 1})
    assert [t.item for t in timers(run, HB)] == [1]
    run.apply(TimerFired(run_id=R, kind=HB, task_id="a", attempt=1, item=1))
    item = run.item("a", 1)
    assert item.error is not None
    assert item.error.type == "HeartbeatTimeout"
    assert (item.status, item.attempt) == (TaskStatus.SCHEDULED, 2)
    assert [(c.task_id, c.attempt, c.item) for c in cancels(run)] == [("a", 1, 1)]


def test_a_map_failing_fast_stops_its_items_still_running() -> None:
    """The first item that fails for good cancels the map's other in-flight items."""
    run = map_run({"handler": "h"}, [1, 2, 3])
    boom = ErrorInfo(type="IOError", message="boom", retryable=False)
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, item=0, error=boom))
    assert run.state.status is RunStatus.FAILED
    assert [(c.task_id, c.attempt) for c in cancels(run)] == [("a", None)]


def test_cancel_attempts_matches_what_it_names() -> None:
    """Unset fields match anything: a run-wide cancel names every attempt of that run only."""
    whole = CancelAttempts(run_id=R)
    assert whole.matches(R, "a", 3, None)
    assert whole.matches(R, "m", 1, 7)
    assert not whole.matches("other", "a", 3, None)
    one = CancelAttempts(run_id=R, task_id="a", attempt=2)
    assert one.matches(R, "a", 2, None)
    assert not one.matches(R, "a", 3, None)
    assert not one.matches(R, "b", 2, None)


def test_a_map_timing_out_stops_its_items_still_running() -> None:
    """The map's own deadline cancels the items its workers are still running."""
    run = map_run({"handler": "h"}, [1, 2], timeout="1m")
    run.apply(TimerFired(run_id=R, kind=TimerKind.MAP_TIMEOUT, task_id="a", attempt=1))
    assert run.status("a") == "timed_out"
    assert [(c.task_id, c.attempt) for c in cancels(run)] == [("a", None)]
