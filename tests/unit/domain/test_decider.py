"""The decider's guarantees, one example per path: scheduling, retries, timeouts, signals."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest

from tests.unit.domain._runs import START, Run, workflow
from treadle.domain.decider import decide, new_run
from treadle.domain.events import (
    CancelRequested,
    CancelTimer,
    DispatchLost,
    DispatchTask,
    RunFinished,
    RunStarted,
    SignalReceived,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

R = "r1"
BOOM = ErrorInfo(type="IOError", message="boom")


def started(run: Run) -> Run:
    run.apply(RunStarted(run_id=R))
    return run


def dispatches(run: Run) -> list[DispatchTask]:
    return [c for c in run.commands if isinstance(c, DispatchTask)]


def test_new_run_is_pending_with_every_task_pending() -> None:
    """new_run builds a pending run whose tasks are pending with their types."""
    wf = workflow({"a": {"handler": "h"}, "nap": {"type": "sleep", "duration": "1s"}})
    state = new_run(wf, run_id=R, version=4, input={"x": 1}, now=START, idempotency_key="k")
    assert state.status is RunStatus.PENDING
    assert state.version == 4
    assert state.idempotency_key == "k"
    assert {t: (s.type, s.status) for t, s in state.tasks.items()} == {
        "a": ("handler", TaskStatus.PENDING),
        "nap": ("sleep", TaskStatus.PENDING),
    }


def test_run_started_dispatches_roots_with_rendered_input() -> None:
    """Starting runs the run, arms its timeout and dispatches every root with rendered input."""
    wf = workflow(
        {
            "a": {"handler": "h.a", "input": {"sku": "${ input.sku }"}, "queue": "fast"},
            "b": {"handler": "h.b", "after": ["a"]},
        },
        timeout="1h",
    )
    run = Run(wf, {"sku": "A-1"})
    run.apply(RunStarted(run_id=R))
    assert run.state.status is RunStatus.RUNNING
    assert run.state.started_at == START
    assert run.commands == [
        StartTimer(run_id=R, kind=TimerKind.RUN_TIMEOUT, fire_at=START + timedelta(hours=1)),
        DispatchTask(
            run_id=R,
            task_id="a",
            attempt=1,
            task_type="handler",
            queue="fast",
            handler="h.a",
            input={"sku": "A-1"},
            timeout_seconds=300.0,
            workflow="w",
            version=1,
        ),
    ]
    assert run.kinds() == ["run.started", "task.scheduled"]
    assert run.status("a") == "scheduled"
    assert run.status("b") == "pending"


def test_second_run_started_changes_nothing() -> None:
    """RunStarted on a running run is a duplicate and is ignored."""
    run = started(Run(workflow({"a": {"handler": "h"}})))
    before = run.state
    decision = run.apply(RunStarted(run_id=R))
    assert not decision.changed
    assert decision.state is before


def test_diamond_with_when_skip_propagates_and_completes() -> None:
    """A false `when` skips a task, its dependents are skipped, and the run still completes."""
    wf = workflow(
        {
            "a": {"handler": "h", "input": 1},
            "b": {"handler": "h", "after": ["a"], "when": "${ tasks.a.output.go }"},
            "c": {"handler": "h", "after": ["a"]},
            "d": {"handler": "h", "after": ["b", "c"]},
        },
        output={"c": "${ tasks.c.output }", "b": "${ tasks.b.status }"},
    )
    run = started(Run(wf))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output={"go": False}))
    assert run.status("b") == "skipped"
    assert [d.task_id for d in dispatches(run)] == ["c"]
    run.apply(TaskCompleted(run_id=R, task_id="c", attempt=1, output="C"))
    assert run.status("d") == "skipped"
    assert run.history[1].data == {"reason": "dependency 'b' is skipped"}
    assert run.state.status is RunStatus.COMPLETED
    assert run.state.output == {"c": "C", "b": "skipped"}
    assert (
        RunFinished(run_id=R, status=RunStatus.COMPLETED, output=run.state.output) in run.commands
    )
    assert run.kinds()[-1] == "run.completed"


def test_results_may_overtake_task_started() -> None:
    """A completion that arrives before TaskStarted counts, and the late start is stale."""
    run = started(Run(workflow({"a": {"handler": "h"}, "b": {"handler": "h", "after": ["a"]}})))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output=5))
    assert run.status("a") == "completed"
    assert not run.apply(TaskStarted(run_id=R, task_id="a", attempt=1)).changed


def test_task_started_arms_the_attempt_timeout() -> None:
    """TaskStarted marks the task running and starts its start-to-close timer."""
    run = started(Run(workflow({"a": {"handler": "h", "timeout": "30s"}})))
    run.advance(2)
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1, worker="w1"))
    assert run.status("a") == "running"
    assert run.state.tasks["a"].started_at == run.now
    assert run.commands == [
        StartTimer(
            run_id=R,
            kind=TimerKind.ATTEMPT_TIMEOUT,
            task_id="a",
            attempt=1,
            fire_at=run.now + timedelta(seconds=30),
        )
    ]


def test_retry_backoff_timing_and_final_failure() -> None:
    """Failures back off initial*backoff**(n-1) up to max_interval; the last fails the run."""
    retry = {"max_attempts": 3, "initial_interval": "2s", "backoff": 3, "max_interval": "5s"}
    run = started(Run(workflow({"a": {"handler": "h", "retry": retry}, "b": {"handler": "h"}})))
    fire_times = []
    for attempt in (1, 2):
        run.apply(TaskStarted(run_id=R, task_id="a", attempt=attempt))
        run.apply(TaskFailed(run_id=R, task_id="a", attempt=attempt, error=BOOM))
        assert run.kinds() == ["task.failed", "task.retry_scheduled"]
        (timer,) = [c for c in run.commands if isinstance(c, StartTimer)]
        assert (timer.kind, timer.attempt) == (TimerKind.RETRY, attempt + 1)
        fire_times.append(timer.fire_at - run.now)
        assert run.status("a") == "scheduled"
        assert run.state.tasks["a"].error == BOOM
        run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=attempt + 1))
        assert [d.attempt for d in dispatches(run)] == [attempt + 1]
    assert fire_times == [timedelta(seconds=2), timedelta(seconds=5)]
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=3, error=BOOM))
    assert run.status("a") == "failed"
    assert run.status("b") == "cancelled"
    assert run.state.status is RunStatus.FAILED
    assert run.state.error == ErrorInfo(
        type="TaskFailed", message="task 'a' failed: IOError: boom", retryable=False
    )
    assert CancelTimer(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="b", attempt=1) in (
        run.commands
    )
    assert run.kinds() == ["task.failed", "task.cancelled", "run.failed"]


def test_late_result_of_a_retried_attempt_is_stale() -> None:
    """Once attempt 2 is scheduled, attempt 1's result changes nothing."""
    run = started(Run(workflow({"a": {"handler": "h", "retry": {"max_attempts": 2}}})))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    assert not run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output=1)).changed
    # The retry is not yet dispatched, so nothing can speak for attempt 2 either.
    assert not run.apply(TaskCompleted(run_id=R, task_id="a", attempt=2, output=1)).changed


@pytest.mark.parametrize(
    "error",
    [
        ErrorInfo(type="ValueError", message="bad sku"),
        ErrorInfo(type="IOError", message="gone", retryable=False),
    ],
)
def test_non_retryable_errors_fail_at_once(error: ErrorInfo) -> None:
    """An error type listed in non_retryable, or marked not retryable, skips the retries."""
    retry = {"max_attempts": 5, "non_retryable": ["ValueError"]}
    run = started(Run(workflow({"a": {"handler": "h", "retry": retry}})))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=error))
    assert run.status("a") == "failed"
    assert run.state.status is RunStatus.FAILED


def test_attempt_timeout_retries_then_times_out() -> None:
    """A timed-out attempt is retried; out of retries the task is timed_out and the run fails."""
    retry = {"max_attempts": 2, "initial_interval": "1s"}
    run = started(Run(workflow({"a": {"handler": "h", "timeout": "10s", "retry": retry}})))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    run.advance(10)
    run.apply(TimerFired(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="a", attempt=1))
    assert run.kinds() == ["task.timed_out", "task.retry_scheduled"]
    assert run.state.tasks["a"].error == ErrorInfo(
        type="TimeoutError", message="attempt 1 exceeded its timeout of 10s"
    )
    assert not run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output="late")).changed
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=2))
    run.apply(TimerFired(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="a", attempt=2))
    assert run.status("a") == "timed_out"
    assert run.state.status is RunStatus.FAILED
    assert run.state.error is not None
    assert run.state.error.message == (
        "task 'a' failed: TimeoutError: attempt 2 exceeded its timeout of 10s"
    )


def test_stale_attempt_timeout_is_ignored() -> None:
    """An attempt-timeout timer of an attempt that already finished changes nothing."""
    run = started(Run(workflow({"a": {"handler": "h"}, "b": {"handler": "h"}})))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    event = TimerFired(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="a", attempt=1)
    assert not run.apply(event).changed


def test_cancel_stops_everything_and_cancels_every_timer() -> None:
    """Cancel marks unfinished tasks cancelled, drops their timers and the run's, and finishes."""
    wf = workflow(
        {
            "a": {"handler": "h"},
            "nap": {"type": "sleep", "duration": "1m"},
            "wait": {"type": "signal", "timeout": "1h"},
            "later": {"handler": "h", "after": ["a"]},
        },
        timeout="2h",
    )
    run = started(Run(wf))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    run.apply(CancelRequested(run_id=R, reason="operator"))
    assert run.state.status is RunStatus.CANCELLED
    assert {t: s.status.value for t, s in run.state.tasks.items()} == dict.fromkeys(
        ["a", "nap", "wait", "later"], "cancelled"
    )
    cancels = {(c.kind, c.task_id) for c in run.commands if isinstance(c, CancelTimer)}
    assert cancels == {
        (TimerKind.ATTEMPT_TIMEOUT, "a"),
        (TimerKind.SLEEP, "nap"),
        (TimerKind.SIGNAL_TIMEOUT, "wait"),
        (TimerKind.RUN_TIMEOUT, None),
    }
    assert run.commands[-1] == RunFinished(run_id=R, status=RunStatus.CANCELLED)
    assert run.history[-1].data == {"reason": "operator"}
    assert not run.apply(CancelRequested(run_id=R)).changed


def test_cancel_before_start_finishes_the_pending_run() -> None:
    """A pending run can be cancelled; no run timeout exists yet, so none is cancelled."""
    run = Run(workflow({"a": {"handler": "h"}}, timeout="1h"))
    run.apply(CancelRequested(run_id=R))
    assert run.state.status is RunStatus.CANCELLED
    assert not [c for c in run.commands if isinstance(c, CancelTimer)]
    assert not run.apply(RunStarted(run_id=R)).changed


def test_run_timeout_times_the_run_out() -> None:
    """The run's own deadline ends it as timed_out with its tasks cancelled."""
    run = started(Run(workflow({"a": {"handler": "h"}}, timeout="5m")))
    run.apply(TimerFired(run_id=R, kind=TimerKind.RUN_TIMEOUT))
    assert run.state.status is RunStatus.TIMED_OUT
    assert run.status("a") == "cancelled"
    assert run.state.error is not None
    assert run.state.error.message == "the run exceeded its timeout of 300s"
    assert run.kinds()[-1] == "run.timed_out"
    assert not [c for c in run.commands if getattr(c, "kind", None) is TimerKind.RUN_TIMEOUT]


def test_duplicates_and_foreign_events_change_nothing() -> None:
    """A duplicate result, another run's event, or a heartbeat returns the state unchanged."""
    run = started(Run(workflow({"a": {"handler": "h"}, "b": {"handler": "h"}})))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output=1))
    state = run.state
    for event in (
        TaskCompleted(run_id=R, task_id="a", attempt=1, output=2),
        TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM),
        TaskCompleted(run_id="other", task_id="b", attempt=1),
        TaskCompleted(run_id=R, task_id="b", attempt=7),
        TaskCompleted(run_id=R, task_id="nope", attempt=1),
        TaskHeartbeat(run_id=R, task_id="b", attempt=1),
        TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="b", attempt=1),
    ):
        decision = run.apply(event)
        assert not decision.changed
        assert decision.state is state
    assert run.state.tasks["a"].output == 1


def test_decide_never_mutates_its_input() -> None:
    """The state passed in is identical, field for field, after deciding."""
    wf = workflow({"a": {"handler": "h"}, "s": {"type": "signal"}})
    state = new_run(wf, run_id=R, version=1, input={"k": [1]}, now=START)
    state = decide(wf, state, RunStarted(run_id=R), START).state
    state = decide(wf, state, SignalReceived(run_id=R, name="other", payload=1), START).state
    before = msgspec.json.encode(state)
    for event in (
        TaskCompleted(run_id=R, task_id="a", attempt=1, output={"x": 1}),
        SignalReceived(run_id=R, name="s", payload=2),
        SignalReceived(run_id=R, name="other", payload=3),
        CancelRequested(run_id=R),
    ):
        decide(wf, state, event, START)
    assert msgspec.json.encode(state) == before


def test_sleep_completes_when_its_timer_fires() -> None:
    """A sleep task runs a durable timer and completes (output null) when it fires."""
    wf = workflow(
        {"nap": {"type": "sleep", "duration": "90s"}, "b": {"handler": "h", "after": ["nap"]}}
    )
    run = started(Run(wf))
    assert run.status("nap") == "running"
    assert (
        StartTimer(
            run_id=R,
            kind=TimerKind.SLEEP,
            task_id="nap",
            attempt=1,
            fire_at=START + timedelta(seconds=90),
        )
        in run.commands
    )
    run.apply(TimerFired(run_id=R, kind=TimerKind.SLEEP, task_id="nap", attempt=1))
    assert run.status("nap") == "completed"
    assert run.state.tasks["nap"].output is None
    assert [d.task_id for d in dispatches(run)] == ["b"]


def test_sleep_until_uses_the_given_time() -> None:
    """`until` sets the timer for that moment."""
    run = started(Run(workflow({"nap": {"type": "sleep", "until": "2030-06-01T12:00:00+02:00"}})))
    (timer,) = [c for c in run.commands if isinstance(c, StartTimer)]
    assert timer.fire_at == START.replace(month=6, day=1, hour=10)


def test_signal_before_the_task_waits_is_buffered_then_consumed() -> None:
    """A signal that arrives early is kept and completes the task the moment it starts."""
    wf = workflow({"a": {"handler": "h"}, "ok": {"type": "signal", "after": ["a"]}})
    run = started(Run(wf))
    run.apply(SignalReceived(run_id=R, name="ok", payload={"by": "ann"}))
    run.apply(SignalReceived(run_id=R, name="ok", payload={"by": "bob"}))
    assert run.state.signals == {"ok": [{"by": "ann"}, {"by": "bob"}]}
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert run.status("ok") == "completed"
    assert run.state.tasks["ok"].output == {"by": "ann"}
    assert run.state.signals == {"ok": [{"by": "bob"}]}


def test_signal_after_the_task_waits_completes_it_and_cancels_its_timeout() -> None:
    """A waiting signal task completes with the payload and its timeout timer is dropped."""
    run = started(Run(workflow({"approve": {"type": "signal", "signal": "go", "timeout": "1h"}})))
    assert run.status("approve") == "running"
    run.apply(SignalReceived(run_id=R, name="go", payload=42))
    assert run.state.tasks["approve"].output == 42
    assert CancelTimer(run_id=R, kind=TimerKind.SIGNAL_TIMEOUT, task_id="approve", attempt=1) in (
        run.commands
    )
    assert run.state.status is RunStatus.COMPLETED


def test_signal_timeout_times_the_task_out_and_fails_the_run() -> None:
    """A signal that never comes times the task out, which fails the run."""
    run = started(Run(workflow({"approve": {"type": "signal", "timeout": "1h"}})))
    run.apply(TimerFired(run_id=R, kind=TimerKind.SIGNAL_TIMEOUT, task_id="approve", attempt=1))
    assert run.status("approve") == "timed_out"
    assert run.state.status is RunStatus.FAILED


def test_signal_to_a_finished_run_changes_nothing() -> None:
    """Signals after the end are not buffered."""
    run = started(Run(workflow({"a": {"handler": "h"}})))
    run.apply(CancelRequested(run_id=R))
    assert not run.apply(SignalReceived(run_id=R, name="x")).changed


def test_when_render_error_fails_the_task_with_expression_error() -> None:
    """An expression that cannot be evaluated fails its task non-retryably."""
    wf = workflow({"a": {"handler": "h", "when": "${ length(input.n) }"}})
    run = started(Run(wf, {"n": 3}))
    error = run.state.tasks["a"].error
    assert error is not None
    assert (error.type, error.retryable) == ("ExpressionError", False)
    assert run.state.status is RunStatus.FAILED


def test_output_render_error_fails_the_run() -> None:
    """If the output expression fails, the run fails instead of completing."""
    run = started(Run(workflow({"a": {"handler": "h"}}, output="${ abs(tasks.a.output) }")))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output="text"))
    assert run.state.status is RunStatus.FAILED
    assert run.state.error is not None
    assert run.state.error.type == "ExpressionError"


def test_http_task_input_is_the_rendered_request() -> None:
    """An http task's dispatch carries its rendered request as input."""
    wf = workflow({"call": {"type": "http", "request": {"url": "${ input.url }", "json": [1]}}})
    run = started(Run(wf, {"url": "https://x.example"}))
    (dispatch,) = dispatches(run)
    assert dispatch.task_type == "http"
    assert dispatch.input == {"method": "GET", "url": "https://x.example", "json": [1]}


def test_dispatch_lost_sends_the_same_attempt_again() -> None:
    """A lost dispatch is sent again with the same attempt and the task goes back to scheduled."""
    run = started(Run(workflow({"a": {"handler": "h"}})))
    run.apply(TaskStarted(run_id=R, task_id="a", attempt=1))
    run.apply(DispatchLost(run_id=R, task_id="a", attempt=1))
    assert run.status("a") == "scheduled"
    assert [d.attempt for d in dispatches(run)] == [1]
    assert run.history[0].data == {"queue": "default", "redispatch": True, "delivery": 2}


def test_dispatch_lost_waits_for_a_pending_backoff() -> None:
    """An attempt still waiting for its retry timer was never sent, so nothing is resent."""
    run = started(Run(workflow({"a": {"handler": "h", "retry": {"max_attempts": 2}}})))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    assert not run.apply(DispatchLost(run_id=R, task_id="a", attempt=2)).changed
