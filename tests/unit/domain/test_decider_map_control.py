"""A `map` task under run control: pause and resume, retry from failure, its own timeout."""

from __future__ import annotations

from tests.unit.domain._items import ItemRun
from tests.unit.domain.test_decider_map import BOOM, R, done, map_run
from treadle.domain.events import (
    CancelMapItems,
    CancelRequested,
    CancelTimer,
    DispatchTask,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    StartTimer,
    TaskCompleted,
    TaskFailed,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, MapProgress, RunStatus, TaskStatus

FATAL = ErrorInfo(type="IOError", message="boom", retryable=False)


def progress(run: ItemRun) -> MapProgress:
    found = run.state.tasks["m"].progress
    assert found is not None
    return found


def fail(run: ItemRun, dispatch: DispatchTask, error: ErrorInfo = FATAL) -> None:
    run.apply(
        TaskFailed(run_id=R, task_id="m", attempt=dispatch.attempt, item=dispatch.item, error=error)
    )


def test_a_paused_map_dispatches_nothing_new_but_records_what_finishes() -> None:
    """While paused, finished items are recorded and their slots stay free."""
    run = map_run([1, 2, 3, 4, 5], concurrency=2)
    first, second = run.dispatched()
    run.apply(PauseRequested(run_id=R))
    done(run, first, "a")
    assert run.dispatched() == []
    assert run.item("m", 0).output == "a"
    done(run, second, "b")
    assert run.dispatched() == []
    assert (progress(run).in_flight, progress(run).completed) == (0, 2)


def test_resume_refills_the_map_up_to_its_concurrency() -> None:
    """The resume dispatches one pending item per free slot, in input order."""
    run = map_run([1, 2, 3, 4, 5], concurrency=3)
    first, *_ = run.dispatched()
    run.apply(PauseRequested(run_id=R))
    done(run, first, "a")
    run.apply(ResumeRequested(run_id=R))
    assert [d.item for d in run.dispatched()] == [3]
    assert progress(run).in_flight == 3
    assert run.loaded[-1] == 1, "the resume loads only the items it dispatches"


def test_an_item_retry_due_while_paused_waits_for_the_resume() -> None:
    """A retry coming due while paused holds the item; the resume sends the same attempt."""
    run = map_run([1, 2], concurrency=1, task={"handler": "h", "retry": {"max_attempts": 3}})
    (first,) = run.dispatched()
    fail(run, first, BOOM)
    run.apply(PauseRequested(run_id=R))
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="m", attempt=2, item=0))
    assert run.dispatched() == []
    assert run.item("m", 0).status is TaskStatus.PENDING
    assert progress(run).in_flight == 0
    run.apply(ResumeRequested(run_id=R))
    assert [(d.item, d.attempt) for d in run.dispatched()] == [(0, 2)]
    again = run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="m", attempt=2, item=0))
    assert not again.changed, "the held retry's timer, fired twice, is stale"


def _failed_map() -> tuple[ItemRun, list[DispatchTask]]:
    """Item 0 completed, item 1 failed for good (fail_fast), items 2 and 3 were cancelled."""
    run = map_run(["x", "y", "z", "w"], concurrency=3)
    sent = run.dispatched()
    done(run, sent[0], "X")
    fail(run, sent[1])
    assert run.state.status is RunStatus.FAILED
    return run, sent


def test_retry_reruns_only_the_items_that_did_not_complete() -> None:
    """A retried map keeps completed outputs and dispatches the rest as new attempts."""
    run, _ = _failed_map()
    assert run.item("m", 2).status is TaskStatus.CANCELLED
    run.apply(RetryRequested(run_id=R))
    assert run.state.status is RunStatus.RUNNING
    assert run.state.tasks["m"].attempt == 2
    assert [(d.item, d.attempt) for d in run.dispatched()] == [(1, 2), (2, 2), (3, 2)]
    assert (progress(run).completed, progress(run).failed, progress(run).in_flight) == (1, 0, 3)
    for dispatch in run.dispatched():
        done(run, dispatch, str(dispatch.item))
    assert run.state.tasks["m"].output == ["X", "1", "2", "3"]
    assert run.dispatched()[0].task_id == "after"


def test_results_of_attempts_before_the_retry_stay_stale() -> None:
    """A late result from the failed run's attempts changes nothing after the retry."""
    run, sent = _failed_map()
    run.apply(RetryRequested(run_id=R))
    for old in sent[1:]:
        assert not run.apply(
            TaskCompleted(run_id=R, task_id="m", attempt=old.attempt, item=old.item, output="late")
        ).changed


def test_retry_of_a_complete_all_map_keeps_outputs_and_reruns_failures() -> None:
    """With complete_all, only the failed items run again and the output is whole."""
    run = map_run([1, 2, 3], concurrency=3, on_failure="complete_all")
    a, b, c = run.dispatched()
    done(run, a, "A")
    fail(run, b)
    done(run, c, "C")
    assert run.state.tasks["m"].status is TaskStatus.FAILED
    run.apply(RetryRequested(run_id=R))
    (again,) = run.dispatched()
    assert (again.item, again.attempt) == (1, 2)
    done(run, again, "B")
    assert run.state.tasks["m"].output == ["A", "B", "C"]


def test_the_map_timeout_cancels_its_items_and_times_the_task_out() -> None:
    """The map's own timeout is a deadline over all items; firing it fails the run."""
    run = map_run([1, 2, 3], concurrency=1, timeout="1m")
    (timer,) = [c for c in run.commands if isinstance(c, StartTimer)]
    assert (timer.kind, timer.task_id, timer.attempt, timer.item) == (
        TimerKind.MAP_TIMEOUT,
        "m",
        1,
        None,
    )
    (first,) = run.dispatched()
    run.apply(TimerFired(run_id=R, kind=TimerKind.MAP_TIMEOUT, task_id="m", attempt=1))
    task = run.state.tasks["m"]
    assert task.status is TaskStatus.TIMED_OUT
    assert task.error is not None
    assert task.error.message == "the map exceeded its timeout of 60s with 0 of 3 items finished"
    assert CancelMapItems(run_id=R, task_id="m") in run.commands
    assert run.state.status is RunStatus.FAILED
    assert run.item("m", 0).status is TaskStatus.CANCELLED
    assert not run.apply(
        TaskCompleted(run_id=R, task_id="m", attempt=first.attempt, item=0)
    ).changed


def test_a_map_that_ends_cancels_its_timeout() -> None:
    """Completing, failing or cancelling the map drops its deadline timer."""
    cancel = CancelTimer(run_id=R, kind=TimerKind.MAP_TIMEOUT, task_id="m", attempt=1)
    completed = map_run([1], timeout="1m")
    done(completed, completed.dispatched()[0])
    assert cancel in completed.commands
    failed = map_run([1], timeout="1m")
    fail(failed, failed.dispatched()[0])
    assert cancel in failed.commands
    cancelled = map_run([1], timeout="1m")
    cancelled.apply(CancelRequested(run_id=R))
    assert cancel in cancelled.commands


def test_the_timer_of_a_map_attempt_before_a_retry_is_stale() -> None:
    """After a retry the map runs as attempt 2: the old deadline no longer applies."""
    run = map_run([1, 2], concurrency=2, timeout="1m")
    fail(run, run.dispatched()[1])
    run.apply(RetryRequested(run_id=R))
    timers = [c for c in run.commands if isinstance(c, StartTimer)]
    assert [(t.kind, t.attempt) for t in timers] == [(TimerKind.MAP_TIMEOUT, 2)]
    stale = TimerFired(run_id=R, kind=TimerKind.MAP_TIMEOUT, task_id="m", attempt=1)
    assert not run.apply(stale).changed
    assert run.state.tasks["m"].status is TaskStatus.RUNNING


def test_dispatched_counts_every_item_sent_after_a_retry_of_the_run() -> None:
    """After a retry reruns items 1-3 of 4 and all complete, dispatched is 4, not a cursor."""
    run, _ = _failed_map()
    run.apply(RetryRequested(run_id=R))
    assert progress(run).dispatched == 4
    for dispatch in run.dispatched():
        done(run, dispatch, str(dispatch.item))
    final = progress(run)
    assert (final.total, final.completed, final.dispatched) == (4, 4, 4)


def test_dispatched_leaves_out_an_item_held_while_paused() -> None:
    """A retry held by a pause puts its item back to pending: it no longer counts as sent."""
    run = map_run([1, 2, 3], concurrency=2, task={"handler": "h", "retry": {"max_attempts": 3}})
    first, second = run.dispatched()
    fail(run, second, BOOM)
    done(run, first, "a")
    assert [d.item for d in run.dispatched()] == [2]
    assert progress(run).dispatched == 3
    run.apply(PauseRequested(run_id=R))
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="m", attempt=2, item=1))
    assert progress(run).dispatched == 2
    run.apply(ResumeRequested(run_id=R))
    assert progress(run).dispatched == 3
