"""Several queued events for one run fold into one transaction's `Changes`; the lanes
hand out each run's events in arrival order."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from treadle.domain.events import CancelTimer, HistoryEntry, StartTimer, TimerKind
from treadle.domain.state import MapItem, RunState, RunStatus, TaskStatus
from treadle.modules.orchestrator._pipeline import Lanes, Pending, fold, merge
from treadle.ports import Changes

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STATE = RunState(id="r1", workflow="wf", version=1, created_at=NOW, status=RunStatus.RUNNING)
TIMEOUT = {"run_id": "r1", "kind": TimerKind.ATTEMPT_TIMEOUT, "task_id": "t1", "attempt": 1}


def _entry(kind: str) -> HistoryEntry:
    return HistoryEntry(type=kind, at=NOW, task_id="t1", attempt=1)


def _stepping(kind: str, **changes: object) -> Pending:
    """An event whose decision appends `kind` to the history (and counts its inputs)."""

    def decide(state: RunState) -> Changes:
        signals = {**state.signals, kind: [len(state.signals)]}
        new = msgspec.structs.replace(state, signals=signals)
        return Changes(state=new, history=[_entry(kind)], **changes)  # type: ignore[arg-type]

    return Pending(decide, batchable=True)


def test_a_timer_started_then_cancelled_in_one_batch_is_not_started() -> None:
    """Started then cancelled: only the cancel is written; cancelled then started: both."""
    start = StartTimer(fire_at=NOW, **TIMEOUT)  # type: ignore[arg-type]
    cancel = CancelTimer(**TIMEOUT)  # type: ignore[arg-type]
    first = Changes(state=STATE, start_timers=[start])
    second = Changes(state=STATE, cancel_timers=[cancel])

    merged = merge([first, second])
    rearmed = merge([second, first])

    assert merged is not None
    assert (list(merged.start_timers), list(merged.cancel_timers)) == ([], [cancel])
    assert rearmed is not None
    assert (list(rearmed.start_timers), list(rearmed.cancel_timers)) == ([start], [cancel])


def test_a_merge_keeps_the_latest_decisions_trace_context_for_its_timers() -> None:
    """The timers of a batch are parented by its last traced decision (one run, one trace)."""
    first = Changes(state=STATE, traceparent="00-a-1-01")
    second = Changes(state=STATE, traceparent="00-a-2-01")
    untraced = Changes(state=STATE)

    merged = merge([first, second, untraced])

    assert merged is not None
    assert merged.traceparent == "00-a-2-01"


def test_fold_decides_each_event_on_the_state_the_previous_left() -> None:
    """Each decision sees the one before it; history is kept in order."""
    batch = [_stepping("task.started"), _stepping("task.completed")]

    changes, count = fold(STATE, batch)

    assert count == 2
    assert changes is not None
    assert [h.type for h in changes.history] == ["task.started", "task.completed"]
    assert changes.state.signals == {"task.started": [0], "task.completed": [1]}
    assert all(p.changed for p in batch)


def test_fold_stops_before_a_later_decision_that_touches_map_items() -> None:
    """Item rows are written as a difference to what was loaded: such a decision waits."""
    item = MapItem(task_id="m", index=0, status=TaskStatus.SCHEDULED)

    def start_map(state: RunState) -> Changes:
        return Changes(state=msgspec.structs.replace(state, map_items=[item]))

    batch = [_stepping("task.started"), Pending(start_map, batchable=True), _stepping("x")]

    changes, count = fold(STATE, batch)

    assert count == 1
    assert changes is not None
    assert [h.type for h in changes.history] == ["task.started"]


def test_the_lanes_hand_out_the_batchable_run_behind_the_first() -> None:
    """A barrier (an event that decides alone) ends the batch; put back keeps the order."""
    lanes = Lanes()
    first, second = _stepping("a"), _stepping("b")
    barrier = Pending(lambda state: None, batchable=False)
    after = _stepping("c")
    for pending in (first, second, barrier, after):
        lanes.add("r1", pending)
    other = _stepping("x")
    lanes.add("r2", other)

    assert lanes.take(64) == [("r1", [first, second]), ("r2", [other])]
    lanes.put_back("r1", [second])
    assert lanes.take(64) == [("r1", [second])]
    assert lanes.take(64) == [("r1", [barrier])]
    abandoned = _stepping("d")
    abandoned.abandoned = True
    lanes.put_back("r1", [abandoned])
    assert lanes.take(64) == [("r1", [after])]
    assert not lanes


def test_a_group_takes_the_runs_waiting_longest_first() -> None:
    """At most `most` runs per group, oldest first; a run put back goes to the front."""
    lanes = Lanes()
    events = {run: _stepping(run) for run in ("r1", "r2", "r3")}
    for run, pending in events.items():
        lanes.add(run, pending)

    taken = lanes.take(2)
    lanes.put_back("r2", [events["r2"]])

    assert [run for run, _ in taken] == ["r1", "r2"]
    assert [run for run, _ in lanes.take(2)] == ["r2", "r3"]
