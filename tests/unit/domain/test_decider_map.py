"""The decider's `map` task: fan-out under a concurrency cap, retries, failure policies."""

from __future__ import annotations

from typing import Any

from tests.unit.domain._items import ItemRun
from tests.unit.domain._runs import workflow
from treadle.domain.events import (
    CancelMapItems,
    CancelRequested,
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
BOOM = ErrorInfo(type="IOError", message="boom")


def map_run(items: Any, **map_fields: Any) -> ItemRun:
    """A started run of `m` (a map over `input`) followed by `after`, which uses its output."""
    template = map_fields.pop(
        "task", {"handler": "h", "input": {"n": "${ item }", "i": "${ index }"}}
    )
    wf = workflow(
        {
            "m": {"type": "map", "items": "${ input }", "task": template, **map_fields},
            "after": {"after": ["m"], "handler": "h", "input": "${ tasks.m.output }"},
        }
    )
    run = ItemRun(wf, items)
    run.apply(RunStarted(run_id=R))
    return run


def done(run: ItemRun, dispatch: DispatchTask, output: Any = None) -> None:
    run.apply(
        TaskCompleted(
            run_id=R, task_id="m", attempt=dispatch.attempt, item=dispatch.item, output=output
        )
    )


def test_map_dispatches_up_to_its_concurrency_with_item_and_index_in_scope() -> None:
    """Starting a map creates every item and sends only `concurrency` of them, in order."""
    run = map_run([10, 20, 30, 40], concurrency=2)
    sent = run.dispatched()
    assert [(d.item, d.input) for d in sent] == [(0, {"n": 10, "i": 0}), (1, {"n": 20, "i": 1})]
    progress = run.state.tasks["m"].progress
    assert progress is not None
    assert (progress.total, progress.in_flight, progress.next_index) == (4, 2, 2)
    assert len(run.items) == 4
    assert run.item("m", 3).status is TaskStatus.PENDING


def test_each_finished_item_frees_one_slot_for_the_next() -> None:
    """A completed item dispatches the next pending one; in flight never exceeds the cap."""
    run = map_run([1, 2, 3], concurrency=2)
    first = run.dispatched()[0]
    done(run, first, "a")
    assert [d.item for d in run.dispatched()] == [2]
    progress = run.state.tasks["m"].progress
    assert progress is not None
    assert (progress.in_flight, progress.completed) == (2, 1)


def test_output_is_in_input_order_whatever_the_finishing_order() -> None:
    """The map's output lists item outputs by index and feeds the next task."""
    run = map_run([1, 2, 3], concurrency=3)
    sent = run.dispatched()
    for dispatch in reversed(sent):
        done(run, dispatch, dispatch.item * 10 if dispatch.item is not None else None)
    assert run.state.tasks["m"].status is TaskStatus.COMPLETED
    assert run.state.tasks["m"].output == [0, 10, 20]
    assert run.dispatched()[0].input == [0, 10, 20]
    assert run.dispatched()[0].task_id == "after"


def test_a_decision_loads_only_the_items_it_needs_until_the_last() -> None:
    """Per event one or two items are loaded; all of them only when the map may finish."""
    run = map_run(list(range(50)), concurrency=5)
    while run.state.tasks["m"].status is TaskStatus.RUNNING:
        pending = [i for i in run.items.values() if i.status is TaskStatus.SCHEDULED]
        item = pending[0]
        run.apply(TaskCompleted(run_id=R, task_id="m", attempt=item.attempt, item=item.index))
    assert max(run.loaded[1:-1]) <= 2
    assert run.loaded[-1] == 50
    assert run.state.tasks["m"].output == [None] * 50


def test_a_failed_item_is_retried_alone_with_its_own_timer() -> None:
    """An item's failure schedules its retry (timer keyed by item); others are untouched."""
    run = map_run([1, 2], task={"handler": "h", "retry": {"max_attempts": 2}})
    first = run.dispatched()[0]
    run.apply(TaskFailed(run_id=R, task_id="m", attempt=1, item=first.item, error=BOOM))
    (timer,) = [c for c in run.commands if isinstance(c, StartTimer)]
    assert (timer.kind, timer.item, timer.attempt) == (TimerKind.RETRY, 0, 2)
    assert run.item("m", 0).status is TaskStatus.SCHEDULED
    run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="m", attempt=2, item=0))
    assert [(d.item, d.attempt) for d in run.dispatched()] == [(0, 2)]


def test_item_start_arms_an_attempt_timeout_that_fails_the_item() -> None:
    """A started item gets its own attempt timeout; when it fires the item times out."""
    run = map_run([1], task={"handler": "h", "timeout": "5s"})
    run.apply(TaskStarted(run_id=R, task_id="m", attempt=1, item=0))
    (timer,) = [c for c in run.commands if isinstance(c, StartTimer)]
    assert (timer.kind, timer.item) == (TimerKind.ATTEMPT_TIMEOUT, 0)
    run.apply(TimerFired(run_id=R, kind=TimerKind.ATTEMPT_TIMEOUT, task_id="m", attempt=1, item=0))
    assert run.item("m", 0).status is TaskStatus.TIMED_OUT
    assert run.state.status is RunStatus.FAILED


def test_fail_fast_fails_the_map_at_the_first_item_that_fails_for_good() -> None:
    """With fail_fast the run fails at once and the other items are cancelled."""
    run = map_run([1, 2, 3], concurrency=3)
    run.apply(TaskFailed(run_id=R, task_id="m", attempt=1, item=1, error=BOOM))
    task = run.state.tasks["m"]
    assert task.status is TaskStatus.FAILED
    assert task.error is not None
    assert task.error.type == "MapItemFailed"
    assert "item 1 failed" in task.error.message
    assert CancelMapItems(run_id=R, task_id="m") in run.commands
    assert run.state.status is RunStatus.FAILED


def test_complete_all_runs_every_item_then_fails_listing_outputs() -> None:
    """With complete_all the other items still run; the map fails at the end."""
    run = map_run([1, 2, 3], concurrency=1, on_failure="complete_all")
    run.apply(TaskFailed(run_id=R, task_id="m", attempt=1, item=0, error=BOOM))
    assert run.state.status is RunStatus.RUNNING
    done(run, run.dispatched()[0], "b")
    done(run, run.dispatched()[0], "c")
    task = run.state.tasks["m"]
    assert task.status is TaskStatus.FAILED
    assert task.output == [None, "b", "c"]
    assert task.error is not None
    assert task.error.message == "1 of 3 items failed"


def test_empty_list_completes_the_map_at_once() -> None:
    """A map over [] completes with [] and moves on."""
    run = map_run([])
    assert run.state.tasks["m"].output == []
    assert run.dispatched()[0].task_id == "after"


def test_items_that_are_not_a_list_fail_the_map() -> None:
    """`items` must evaluate to a list."""
    run = map_run({"a": 1})
    error = run.state.tasks["m"].error
    assert error is not None
    assert error.type == "MapItemsInvalid"


def test_stale_and_duplicate_item_results_change_nothing() -> None:
    """A result for an old attempt or a finished item is ignored."""
    run = map_run([1, 2], concurrency=1)
    first = run.dispatched()[0]
    done(run, first, "x")
    assert not run.apply(
        TaskCompleted(run_id=R, task_id="m", attempt=1, item=0, output="y")
    ).changed
    assert not run.apply(TaskCompleted(run_id=R, task_id="m", attempt=7, item=1)).changed
    assert not run.apply(TaskCompleted(run_id=R, task_id="m", attempt=1, item=99)).changed


def test_cancelling_the_run_cancels_the_map_items() -> None:
    """A cancelled run marks the running map cancelled and asks for its items to be."""
    run = map_run([1, 2])
    run.apply(CancelRequested(run_id=R))
    assert run.state.tasks["m"].status is TaskStatus.CANCELLED
    assert CancelMapItems(run_id=R, task_id="m") in run.commands
