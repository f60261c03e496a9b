"""Several events for one run, applied in one store transaction.

Events for a run that arrive while a decision on it is in progress queue behind the
run's lock. The next holder takes them all (up to the first that cannot share a
transaction) and folds them through the decider one after another, in arrival order,
so a worker's `task.started` and `task.completed` (or many results of a fan-out) cost
one lock, one load and one commit instead of one each. Each event is still decided on
its own (its history, messages and span are its own); only the writes are merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from treadle.domain.events import CancelTimer, StartTimer
from treadle.domain.keys import TimerKey
from treadle.domain.state import RunState
from treadle.ports import Applied, Changes, Decide


class Pending:
    """One event waiting for its run: its decide callback, and what became of it."""

    __slots__ = ("abandoned", "applied", "batchable", "changed", "decide", "done", "outcome")

    def __init__(self, decide: Decide, *, batchable: bool, outcome: Any = None) -> None:
        self.decide = decide
        self.batchable = batchable
        self.outcome = outcome
        """What the caller keeps of its decision (the engine's record of it)."""
        self.done = False
        self.changed = False
        self.abandoned = False
        """Its caller stopped waiting (cancelled): never put back in the queue."""
        self.applied: Applied | None = None


class RunQueues:
    """The events waiting for each run in this process, in arrival order."""

    def __init__(self) -> None:
        self._queues: dict[str, list[Pending]] = {}

    def add(self, run_id: str, pending: Pending) -> None:
        self._queues.setdefault(run_id, []).append(pending)

    def remove(self, run_id: str, pending: Pending) -> None:
        """Forget `pending` if it is still queued (it was cancelled, or is deciding alone)."""
        queue = self._queues.get(run_id)
        if queue is None:
            return
        try:
            queue.remove(pending)
        except ValueError:
            return
        if not queue:
            del self._queues[run_id]

    def take(self, run_id: str, own: Pending) -> list[Pending]:
        """`own` and the batchable events queued right behind it, out of the queue.

        When `own` is not first (an event ahead of it is still waiting), or cannot share
        a transaction, it goes alone, so no event is decided before one that arrived
        earlier.
        """
        queue = self._queues.get(run_id, [])
        if not own.batchable or not queue or queue[0] is not own:
            self.remove(run_id, own)
            return [own]
        end = 1
        while end < len(queue) and queue[end].batchable:
            end += 1
        taken, rest = queue[:end], queue[end:]
        if rest:
            self._queues[run_id] = rest
        else:
            self._queues.pop(run_id, None)
        return taken

    def put_back(self, run_id: str, pendings: Sequence[Pending]) -> None:
        """Return events taken but not applied to the head of the queue, in order."""
        kept = [p for p in pendings if not p.abandoned]
        if kept:
            self._queues[run_id] = [*kept, *self._queues.get(run_id, [])]


def fold(state: RunState, batch: list[Pending]) -> tuple[Changes | None, int]:
    """Decide each event of `batch` on the state the previous one left; (merged changes,
    how many events were decided).

    An event after the first whose decision touches map items stops the fold (it and
    the rest are left for a transaction of their own): item rows are written from the
    difference to what was loaded, which only holds for one decision.
    """
    decided: list[Changes] = []
    for count, pending in enumerate(batch):
        changes = pending.decide(state)
        if count and changes is not None and not _mergeable(state, changes):
            return merge(decided), count
        pending.changed = changes is not None
        if changes is not None:
            decided.append(changes)
            state = changes.state
    return merge(decided), len(batch)


def _mergeable(before: RunState, changes: Changes) -> bool:
    return not (before.map_items or changes.state.map_items or changes.cancel_items)


def merge(decided: Sequence[Changes]) -> Changes | None:
    """One `Changes` writing what `decided` write one after another (None for none).

    The store cancels timers before it starts them, so a timer started by one decision
    and cancelled by a later one is not started at all; one cancelled and started again
    is started.
    """
    if not decided:
        return None
    if len(decided) == 1:
        return decided[0]
    starts: dict[TimerKey, StartTimer] = {}
    cancels: list[CancelTimer] = []
    for changes in decided:
        for cancel in changes.cancel_timers:
            starts.pop(cancel.timer_key, None)
            cancels.append(cancel)
        for start in changes.start_timers:
            starts[start.timer_key] = start
    return Changes(
        state=decided[-1].state,
        history=[entry for changes in decided for entry in changes.history],
        outbox=[message for changes in decided for message in changes.outbox],
        start_timers=list(starts.values()),
        cancel_timers=cancels,
        cancel_items=[task for changes in decided for task in changes.cancel_items],
        # One run, one trace: the latest decision's span parents the timers they start.
        traceparent=next((c.traceparent for c in reversed(decided) if c.traceparent), None),
    )
