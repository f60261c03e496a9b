"""The decider's `workflow` task: starting a child run, its end, and cancelling it."""

from __future__ import annotations

from tests.unit.domain._runs import Run, workflow
from treadle.domain.events import (
    CancelChildRun,
    CancelRequested,
    ChildRunFinished,
    ChildRunStarted,
    RunStarted,
    StartChildRun,
)
from treadle.domain.state import ErrorInfo, RunStatus, TaskStatus

R = "r1"


def child_run() -> Run:
    """A started run whose task `c` is a child run of `kid` with the parent's input."""
    wf = workflow(
        {"c": {"type": "workflow", "workflow": "kid", "version": 2, "input": "${ input }"}}
    )
    run = Run(wf, {"x": 1})
    run.apply(RunStarted(run_id=R))
    return run


def test_a_workflow_task_asks_for_its_child_run() -> None:
    """Starting the task emits StartChildRun with the rendered input and a stable key."""
    run = child_run()
    (start,) = [c for c in run.commands if isinstance(c, StartChildRun)]
    assert (start.workflow, start.version, start.input) == ("kid", 2, {"x": 1})
    assert start.idempotency_key == "treadle.child:r1/c/1"
    assert run.state.tasks["c"].status is TaskStatus.RUNNING


def test_the_child_output_becomes_the_task_output() -> None:
    """A completed child completes the task and then the run."""
    run = child_run()
    run.apply(ChildRunStarted(run_id=R, task_id="c", attempt=1, child_run_id="k1"))
    assert run.state.tasks["c"].child_run_id == "k1"
    run.apply(
        ChildRunFinished(
            run_id=R, task_id="c", child_run_id="k1", status=RunStatus.COMPLETED, output=5
        )
    )
    assert run.state.tasks["c"].output == 5
    assert run.state.status is RunStatus.COMPLETED


def test_a_failed_child_fails_the_task() -> None:
    """Any other end of the child fails the task with the child's reason."""
    run = child_run()
    error = ErrorInfo(type="TaskFailed", message="nope")
    run.apply(
        ChildRunFinished(
            run_id=R, task_id="c", child_run_id="k1", status=RunStatus.FAILED, error=error
        )
    )
    task_error = run.state.tasks["c"].error
    assert task_error is not None
    assert task_error.type == "ChildRunFailed"
    assert "nope" in task_error.message
    assert run.state.status is RunStatus.FAILED


def test_cancelling_the_parent_cancels_the_child() -> None:
    """A parent cancelled while its child runs asks for the child to be cancelled."""
    run = child_run()
    run.apply(ChildRunStarted(run_id=R, task_id="c", attempt=1, child_run_id="k1"))
    run.apply(CancelRequested(run_id=R))
    (cancel,) = [c for c in run.commands if isinstance(c, CancelChildRun)]
    assert cancel.child_run_id == "k1"


def test_a_child_started_after_its_parent_ended_is_cancelled() -> None:
    """The id of a child that arrives after the parent's cancel is cancelled on arrival."""
    run = child_run()
    run.apply(CancelRequested(run_id=R))
    run.apply(ChildRunStarted(run_id=R, task_id="c", attempt=1, child_run_id="k1"))
    assert [c.child_run_id for c in run.commands if isinstance(c, CancelChildRun)] == ["k1"]
    assert not run.apply(
        ChildRunStarted(run_id=R, task_id="c", attempt=1, child_run_id="k1")
    ).changed


def test_a_result_from_another_child_is_ignored() -> None:
    """ChildRunFinished for a child id other than the recorded one changes nothing."""
    run = child_run()
    run.apply(ChildRunStarted(run_id=R, task_id="c", attempt=1, child_run_id="k1"))
    finished = ChildRunFinished(
        run_id=R, task_id="c", child_run_id="k2", status=RunStatus.COMPLETED
    )
    assert not run.apply(finished).changed
