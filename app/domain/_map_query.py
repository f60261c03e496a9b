"""What a decision about a `map` task needs loaded of its items (see `ItemQuery`).

An item event loads its item and the next pending item of its map (to refill the slot
it frees); when at most one item is left, every item of the map, so the output is
assembled in the same decision. A resume loads, per running map, the next pending items
up to its free slots; a retry from failure loads each map it will re-run whole, once.
"""

from __future__ import annotations

from treadle.domain.events import Event, ResumeRequested, RetryRequested
from treadle.domain.state import ItemQuery, RunState, RunStatus, TaskStatus

_RERUN = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED})


def items_wanted(state: RunState, event: Event) -> ItemQuery:
    """The map items the decision on `event` needs: its item, the next one, or all.

    A resume refills every running map (the next pending items, one per free slot); a
    retry from failure re-runs maps, so it reads each failed map's items whole, once.
    """
    if isinstance(event, ResumeRequested):
        return _refill_query(state) if state.paused else ItemQuery()
    if isinstance(event, RetryRequested):
        return ItemQuery(whole=_maps_to_rerun(state))
    index, task_id = getattr(event, "item", None), getattr(event, "task_id", None)
    if index is None or task_id is None:
        return ItemQuery()
    task = state.tasks.get(task_id)
    if task is None or task.progress is None:
        return ItemQuery(keys=[(task_id, index)])
    progress = task.progress
    pending = []
    if progress.next_index < progress.total:
        pending.append((task_id, progress.next_index, 1))  # one event frees at most one slot
    whole = [task_id] if progress.total - progress.finished <= 1 else []
    return ItemQuery(keys=[(task_id, index)], whole=whole, pending=pending)


def _refill_query(state: RunState) -> ItemQuery:
    pending = []
    for task_id, task in state.tasks.items():
        progress = task.progress
        if task.status is not TaskStatus.RUNNING or progress is None:
            continue
        free = progress.concurrency - progress.in_flight
        if free > 0 and progress.next_index < progress.total:
            pending.append((task_id, progress.next_index, free))
    return ItemQuery(pending=pending)


def _maps_to_rerun(state: RunState) -> list[str]:
    """Maps that started and did not complete, in a run that a retry can resume."""
    if state.status not in (RunStatus.FAILED, RunStatus.TIMED_OUT):
        return []
    return [
        task_id
        for task_id, task in state.tasks.items()
        if task.progress is not None and task.status in _RERUN
    ]
