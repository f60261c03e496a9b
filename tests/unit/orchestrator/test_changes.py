"""Decisions become store `Changes`; fired timers are always deleted with them."""

from __future__ import annotations

from datetime import UTC, datetime

from treadle.domain.events import (
    CancelTimer,
    Decision,
    DispatchTask,
    HistoryEntry,
    RunFinished,
    StartTimer,
    TimerKind,
)
from treadle.domain.state import RunState, RunStatus
from treadle.messages import decode
from treadle.modules.orchestrator import changes_from_decision, new_run_id
from treadle.modules.orchestrator._changes import fired_timer_cancel, with_cancelled
from treadle.ports import DueTimer

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STATE = RunState(id="r1", workflow="wf", version=1, created_at=NOW, status=RunStatus.RUNNING)
ENTRY = HistoryEntry(type="task.scheduled", at=NOW, task_id="t1", attempt=1)


def _dispatch(queue: str = "default") -> DispatchTask:
    return DispatchTask(
        run_id="r1", task_id="t1", attempt=1, task_type="handler", queue=queue, handler="h"
    )


def test_a_decision_without_commands_or_history_writes_nothing() -> None:
    """A stale event's empty decision maps to None, so the store writes nothing."""
    assert changes_from_decision(Decision(state=STATE), source="o") is None


def test_each_command_lands_in_its_place() -> None:
    """Dispatches go to the outbox on their queue's channel; timers to start/cancel."""
    start = StartTimer(run_id="r1", kind=TimerKind.RETRY, fire_at=NOW, task_id="t1", attempt=2)
    cancel = CancelTimer(run_id="r1", kind=TimerKind.ATTEMPT_TIMEOUT, task_id="t1", attempt=1)
    finished = RunFinished(run_id="r1", status=RunStatus.COMPLETED)
    decision = Decision(
        state=STATE,
        commands=[_dispatch("gpu"), start, cancel, finished],
        history=[ENTRY],
    )

    changes = changes_from_decision(decision, source="orch-1", traceparent="00-t-s-01")

    assert changes is not None
    assert changes.state is STATE
    assert list(changes.history) == [ENTRY]
    assert list(changes.start_timers) == [start]
    assert list(changes.cancel_timers) == [cancel]
    assert changes.traceparent == "00-t-s-01"  # the timers keep it for whoever fires them
    [outgoing] = changes.outbox
    assert outgoing.channel == "tasks.gpu"
    env = decode(outgoing.message.body)
    assert env.payload == _dispatch("gpu")
    assert (env.source, env.traceparent, env.correlation_id) == ("orch-1", "00-t-s-01", "r1")
    assert outgoing.message.key == "r1"


def test_a_fired_timer_is_cancelled_even_when_nothing_else_changes() -> None:
    """With no changes from the decider, the fired timer's row is still deleted."""
    timer = DueTimer(run_id="r1", kind=TimerKind.RETRY, task_id="t1", attempt=2, fire_at=NOW)
    cancel = fired_timer_cancel(timer)

    changes = with_cancelled(None, STATE, cancel)

    assert changes.state is STATE
    assert list(changes.cancel_timers) == [cancel]
    assert not changes.outbox
    assert not changes.history


def test_a_fired_timer_cancel_joins_the_decision() -> None:
    """The fired timer's cancel is added to what the decision writes, once."""
    decision = Decision(state=STATE, commands=[_dispatch()], history=[ENTRY])
    changes = changes_from_decision(decision, source="o")
    cancel = CancelTimer(run_id="r1", kind=TimerKind.RETRY, task_id="t1", attempt=2)

    merged = with_cancelled(changes, STATE, cancel)
    again = with_cancelled(merged, STATE, cancel)

    assert list(merged.cancel_timers) == [cancel]
    assert len(merged.outbox) == 1
    assert list(again.cancel_timers) == [cancel]


def test_a_rearmed_timer_is_not_cancelled() -> None:
    """When the decision starts the same timer identity again, the new timer is kept."""
    start = StartTimer(run_id="r1", kind=TimerKind.SLEEP, fire_at=NOW, task_id="t1", attempt=0)
    changes = changes_from_decision(Decision(state=STATE, commands=[start]), source="o")
    cancel = CancelTimer(run_id="r1", kind=TimerKind.SLEEP, task_id="t1", attempt=0)

    merged = with_cancelled(changes, STATE, cancel)

    assert list(merged.cancel_timers) == []
    assert list(merged.start_timers) == [start]


def test_run_ids_sort_by_creation_time() -> None:
    """Ids made later sort after earlier ones, and ids made together differ."""
    early = [new_run_id(NOW) for _ in range(50)]
    later = new_run_id(datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC))

    assert len(set(early)) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in early)
    assert all(i < later for i in early)


def test_a_timer_started_then_cancelled_in_one_decision_is_not_started() -> None:
    """The store deletes before it upserts, so such a pair would leave the row to fire
    stale later (an attempt armed and ended in the same decision); cancelled then started
    again, the timer is started."""
    key = {"run_id": "r1", "kind": TimerKind.DISPATCH_TIMEOUT, "task_id": "t1", "attempt": 1}
    armed = StartTimer(**key, fire_at=NOW)
    cancel = CancelTimer(**key)
    other = StartTimer(run_id="r1", kind=TimerKind.RETRY, fire_at=NOW, task_id="t2", attempt=2)
    rearmed = StartTimer(**key, fire_at=NOW.replace(hour=13))

    ended = changes_from_decision(
        Decision(state=STATE, commands=[armed, other, cancel]), source="o"
    )
    again = changes_from_decision(Decision(state=STATE, commands=[cancel, rearmed]), source="o")

    assert ended is not None
    assert list(ended.start_timers) == [other]
    assert list(ended.cancel_timers) == [cancel]
    assert again is not None
    assert list(again.start_timers) == [rearmed]
    assert list(again.cancel_timers) == [cancel]
