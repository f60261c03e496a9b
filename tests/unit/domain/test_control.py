"""Run control in the decider: retry from failure, pause and resume."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.domain._runs import Run, workflow
from treadle.domain.events import (
    DispatchTask,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RunStarted,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

R = "r1"
FATAL = ErrorInfo(type="IOError", message="boom", retryable=False)
BOOM = ErrorInfo(type="IOError", message="boom")


def dispatches(run: Run) -> list[DispatchTask]:
    return [c for c in run.commands if isinstance(c, DispatchTask)]


def _failed_chain() -> Run:
    """a completes, b fails for good (c is skipped), d ran beside b and was cancelled."""
    run = Run(
        workflow(
            {
                "a": {"handler": "h"},
                "b": {"handler": "h", "after": ["a"], "input": "${ tasks.a.output }"},
                "c": {"handler": "h", "after": ["b"]},
                "d": {"handler": "h", "after": ["a"]},
            }
        )
    )
    run.apply(RunStarted(run_id=R))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1, output={"id": 7}))
    run.apply(TaskFailed(run_id=R, task_id="b", attempt=1, error=FATAL))
    return run


def test_retry_resumes_from_failed_tasks_keeping_completed_outputs() -> None:
    """Retrying a failed run restarts what failed or was cancelled, keeps `a`'s output."""
    run = _failed_chain()
    assert run.state.status is RunStatus.FAILED
    assert run.status("d") == "cancelled"
    run.apply(RetryRequested(run_id=R))
    assert run.state.status is RunStatus.RUNNING
    assert run.state.error is None
    assert run.state.finished_at is None
    assert run.state.tasks["a"].output == {"id": 7}
    assert run.kinds()[0] == "run.retried"
    assert run.history[0].data == {"tasks": ["b", "c", "d"]}
    sent = {c.task_id: c for c in dispatches(run)}
    assert set(sent) == {"b", "d"}
    assert sent["b"].attempt == 2  # the attempt number continues
    assert sent["b"].input == {"id": 7}
    assert run.status("c") == "pending"


def test_retried_run_completes_and_ignores_the_old_attempts() -> None:
    """After a retry, a late result of an old attempt is stale; the new attempts finish it."""
    run = _failed_chain()
    run.apply(RetryRequested(run_id=R))
    late = run.apply(TaskCompleted(run_id=R, task_id="d", attempt=1, output="late"))
    assert not late.changed
    run.apply(TaskCompleted(run_id=R, task_id="b", attempt=2))
    run.apply(TaskCompleted(run_id=R, task_id="d", attempt=2))
    run.apply(TaskCompleted(run_id=R, task_id="c", attempt=1))
    assert run.state.status is RunStatus.COMPLETED


def test_retry_of_a_running_or_completed_run_changes_nothing() -> None:
    """Only failed and timed-out runs can be retried."""
    run = Run(workflow({"a": {"handler": "h"}}))
    run.apply(RunStarted(run_id=R))
    assert not run.apply(RetryRequested(run_id=R)).changed
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert not run.apply(RetryRequested(run_id=R)).changed


def test_retry_keeps_tasks_skipped_by_their_when() -> None:
    """A task skipped by a false `when` had its inputs; the retry leaves it skipped."""
    run = Run(
        workflow(
            {
                "a": {"handler": "h"},
                "maybe": {"handler": "h", "after": ["a"], "when": "${ `false` }"},
                "b": {"handler": "h", "after": ["a"]},
            }
        )
    )
    run.apply(RunStarted(run_id=R))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    run.apply(TaskFailed(run_id=R, task_id="b", attempt=1, error=FATAL))
    run.apply(RetryRequested(run_id=R))
    assert run.status("maybe") == "skipped"
    assert [c.task_id for c in dispatches(run)] == ["b"]


def test_retry_of_a_timed_out_run_arms_a_fresh_deadline() -> None:
    """A run that hit its deadline gets a new one when retried."""
    run = Run(workflow({"a": {"handler": "h"}}, timeout="1m"))
    run.apply(RunStarted(run_id=R))
    run.advance(60)
    run.apply(TimerFired(run_id=R, kind=TimerKind.RUN_TIMEOUT))
    assert run.state.status is RunStatus.TIMED_OUT
    run.apply(RetryRequested(run_id=R))
    timers = [c for c in run.commands if isinstance(c, StartTimer)]
    assert [t.kind for t in timers] == [TimerKind.RUN_TIMEOUT]
    assert timers[0].fire_at == run.now + timedelta(minutes=1)
    assert dispatches(run)[0].attempt == 2


def test_pause_blocks_dispatch_and_resume_releases() -> None:
    """While paused a completion is recorded but its dependents wait for the resume."""
    run = Run(workflow({"a": {"handler": "h"}, "b": {"handler": "h", "after": ["a"]}}))
    run.apply(RunStarted(run_id=R))
    run.apply(PauseRequested(run_id=R))
    assert run.state.paused
    assert run.kinds() == ["run.paused"]
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert run.status("a") == "completed"
    assert dispatches(run) == []
    assert run.status("b") == "pending"
    run.apply(ResumeRequested(run_id=R))
    assert not run.state.paused
    assert [c.task_id for c in dispatches(run)] == ["b"]


def test_pause_and_resume_twice_change_nothing_the_second_time() -> None:
    """Pausing a paused run or resuming a running one is a no-op."""
    run = Run(workflow({"a": {"handler": "h"}}))
    run.apply(RunStarted(run_id=R))
    assert not run.apply(ResumeRequested(run_id=R)).changed
    run.apply(PauseRequested(run_id=R))
    assert not run.apply(PauseRequested(run_id=R)).changed


def test_a_paused_run_still_completes_when_its_last_task_finishes() -> None:
    """In-flight work finishing while paused can still end the run."""
    run = Run(workflow({"a": {"handler": "h"}}))
    run.apply(RunStarted(run_id=R))
    run.apply(PauseRequested(run_id=R))
    run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert run.state.status is RunStatus.COMPLETED
    assert not run.apply(ResumeRequested(run_id=R)).changed


def test_retry_timer_firing_while_paused_waits_for_resume() -> None:
    """A retry that comes due while paused is held, then sent with its attempt on resume."""
    run = Run(workflow({"a": {"handler": "h", "retry": {"max_attempts": 3}}}))
    run.apply(RunStarted(run_id=R))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=1, error=BOOM))
    run.apply(PauseRequested(run_id=R))
    run.advance(5)
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=2))
    assert dispatches(run) == []
    assert run.kinds() == ["task.retry_held"]
    assert run.state.tasks["a"].status is TaskStatus.PENDING
    stale = run.apply(TaskCompleted(run_id=R, task_id="a", attempt=1))
    assert not stale.changed
    run.apply(ResumeRequested(run_id=R))
    assert [(c.task_id, c.attempt) for c in dispatches(run)] == [("a", 2)]


def test_pause_of_a_finished_run_changes_nothing() -> None:
    """A finished run cannot be paused or resumed."""
    run = _failed_chain()
    assert not run.apply(PauseRequested(run_id=R)).changed
    assert not run.apply(ResumeRequested(run_id=R)).changed
