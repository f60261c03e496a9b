"""The decision pipeline: the one way an event, or a new run, becomes a committed decision.

The path of a worker's result: `EventConsumer` hands it to `RunService.apply_event`, which
wraps the decider in a `Pending`; `DecisionPipeline.submit` (here) queues it, decides it
inside a `StateStore.deciding` transaction, and after the commit relays what it wrote.

- Arrival order. Each run has a lane; its events are decided in the order they came.
- Grouping. One group transaction is in flight at a time; whoever waits when it ends
  leads the next, which takes the head of every waiting lane (at most `GROUP_MAX_RUNS`
  runs), so a busy orchestrator pays one lock statement, one read and one statement per
  kind of write for many decisions, and an idle one commits a lone decision at once.
- Folding. A lane's head is one event, or a run of batchable ones (worker results) that
  are decided one after another, each on the state the previous one left, and written as
  one `Changes` (`fold`, `merge`).
- Failure. A decision that raises fails its own caller. A group whose transaction fails is
  decided again lane by lane, each in a transaction of its own, so that one lane's failure
  is never another's.
- After the commit, one caller per lane relays its messages, wakes the timer loop for the
  timers it started, announces a run that ended and counts the decisions.

A caller cancelled while its event is in a group does not roll the group back: its
decision may commit without it. Its event was not acked, so it comes again and is decided
again (decisions are idempotent), and its outbox rows go out with the sweeper. A leader
cancelled mid-commit rolls its group back; the others get a retryable `StoreUnavailable`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import anyio
import msgspec

from treadle.domain.errors import RunNotFound
from treadle.domain.events import CancelTimer, Decision, StartTimer
from treadle.domain.keys import TimerKey
from treadle.domain.state import ItemQuery, RunState
from treadle.modules.orchestrator._finishes import RunFinishes
from treadle.modules.orchestrator._measure import record_decision
from treadle.modules.orchestrator._timers import TimerAlarm
from treadle.observability import Metrics, current_traceparent
from treadle.ports import (
    Applied,
    Changes,
    DecisionBatch,
    DecisionStore,
    EagerWorker,
    OutboxRecord,
    OutgoingMessage,
)
from treadle.store import StoreUnavailable

if TYPE_CHECKING:
    from treadle.domain.compile import Workflow

Decide = Callable[[RunState], Changes | None]
"""A pure decision on a run's state; None means 'nothing to write'."""
ItemsWanted = Callable[[RunState], ItemQuery]
"""Which map items to load into the state before deciding (given the run without them)."""

GROUP_MAX_RUNS = 64
"""Runs decided in one group transaction at most."""
GROUP_LEADERS = 1
"""Group transactions in flight at once. One: SQLite has a single writer anyway, and on
PostgreSQL the decisions that arrive while a group commits make the next group larger,
which costs less CPU per step than committing them in parallel (chain10 on pg-memory,
300 runs: about 295 steps/s with one, 240 with three)."""


class Publisher(Protocol):
    """Where committed outbox rows go out (the `Relay`)."""

    async def publish(self, records: Sequence[OutboxRecord]) -> int: ...


class Outcome:
    """What a decider saw and decided, filled in each time it runs (it may run more than
    once: a group that failed is decided again, lane by lane)."""

    __slots__ = ("decision", "state")

    def __init__(self) -> None:
        self.state: RunState | None = None
        self.decision: Decision | None = None


class Pending:
    """One event (or new run) waiting for its decision, and what became of it."""

    __slots__ = (
        "abandoned",
        "applied",
        "batchable",
        "changed",
        "create",
        "created",
        "decide",
        "done",
        "error",
        "items",
        "outcome",
        "owns",
        "taken",
        "wake",
        "workflow",
    )

    def __init__(
        self,
        decide: Decide,
        *,
        batchable: bool,
        items: ItemsWanted | None = None,
        create: RunState | None = None,
        outcome: Outcome | None = None,
        workflow: Workflow | None = None,
    ) -> None:
        self.decide = decide
        self.batchable = batchable and items is None and create is None
        self.items = items
        self.create = create
        """The new run this decides the start of (None: an event on a stored run)."""
        self.outcome = outcome
        self.workflow = workflow
        """With `outcome`: the decision is counted in the metrics against this workflow."""
        self.done = False
        self.changed = False
        self.created = False
        self.applied: Applied | None = None
        self.error: BaseException | None = None
        self.taken = False
        self.owns: _Lane | None = None
        """The lane share whose after-commit work this one's caller does."""
        self.abandoned = False
        """Its caller stopped waiting (cancelled): never put back in its lane."""
        self.wake = anyio.Event()

    def settle(self, applied: Applied | None, *, created: bool = False) -> None:
        self.applied, self.created, self.done = applied, created, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Lru(Generic[K, V]):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)


class Lanes:
    """The events waiting for each run, in arrival order; runs by their oldest event."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[str, list[Pending]] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._lanes)

    def add(self, key: str, pending: Pending) -> None:
        self._lanes.setdefault(key, []).append(pending)

    def remove(self, key: str, pending: Pending) -> None:
        """Forget `pending` if it is still waiting (its caller was cancelled)."""
        lane = self._lanes.get(key)
        if lane is None or pending not in lane:
            return
        lane.remove(pending)
        if not lane:
            del self._lanes[key]

    def oldest(self) -> Pending | None:
        """The first event of the lane waiting longest (it leads the next group)."""
        for lane in self._lanes.values():
            return lane[0]
        return None

    def take(self, most: int) -> list[tuple[str, list[Pending]]]:
        """The head of each lane, for at most `most` runs, out of the lanes.

        A head is the first event, and the batchable events right behind it when it is
        batchable itself: one that cannot share a transaction goes alone, and ends the
        batch of those before it.
        """
        group = [(key, _head(lane)) for key, lane in list(self._lanes.items())[:most]]
        for key, head in group:
            rest = self._lanes[key][len(head) :]
            if rest:
                self._lanes[key] = rest
            else:
                del self._lanes[key]
            for pending in head:
                pending.taken = True
        return group

    def take_followers(self, key: str, head: list[Pending]) -> None:
        """Extend a batchable `head` taken earlier with the batchable events that have
        queued behind it since (they arrived while its transaction took its locks)."""
        lane = self._lanes.get(key)
        if not lane or not head[-1].batchable:
            return
        more = _head(lane) if lane[0].batchable else []
        for pending in more:
            pending.taken = True
        head += more
        if len(more) == len(lane):
            del self._lanes[key]
        elif more:
            self._lanes[key] = lane[len(more) :]

    def put_back(self, key: str, pendings: Sequence[Pending]) -> None:
        """Return events taken but not decided to the front of their lane, in order."""
        kept = [p for p in pendings if not p.abandoned]
        for pending in kept:
            pending.taken = False
        if kept:
            self._lanes[key] = [*kept, *self._lanes.get(key, [])]
            self._lanes.move_to_end(key, last=False)


def _head(lane: list[Pending]) -> list[Pending]:
    if not lane[0].batchable:
        return lane[:1]
    end = 1
    while end < len(lane) and lane[end].batchable:
        end += 1
    return lane[:end]


class _Lane:
    """One lane's share of a group: its events taken, and what the transaction did of them."""

    __slots__ = ("changes", "decided", "eager", "error", "key", "pendings")

    def __init__(self, key: str, pendings: list[Pending]) -> None:
        self.key = key
        self.pendings = pendings
        self.decided: list[Pending] = []
        self.changes: Changes | None = None
        self.error: Exception | None = None
        """Why its first event could not be decided (it fails once the group commits)."""
        self.eager: list[object] = []
        """Worker slots held for its dispatches written leased, in outbox order."""


class DecisionPipeline:
    """Queues decisions per run, commits them in groups, and does the after-commit work."""

    def __init__(
        self,
        store: DecisionStore,
        relay: Publisher,
        *,
        alarm: TimerAlarm,
        finishes: RunFinishes,
        metrics: Metrics,
        traces: int = 4096,
        max_runs: int = GROUP_MAX_RUNS,
        leaders: int = GROUP_LEADERS,
    ) -> None:
        self._store = store
        self._relay = relay
        self._alarm = alarm
        self._finishes = finishes
        self._metrics = metrics
        self._max_runs = max_runs
        self._max_leaders = leaders
        self._leaders = 0
        self._lanes = Lanes()
        self.eager: EagerWorker | None = None
        """This process's worker, when it runs the dispatches decided here (`worker.eager`)."""
        # The trace context of each run's latest decision here, so a decision with no
        # message behind it (a timer firing) continues the run's trace. In memory only:
        # a timer fired by another replica, or after a restart, begins a new trace.
        self._traces: Lru[str, str] = Lru(traces)

    def trace_of(self, run_id: str) -> str | None:
        """The trace context of the latest decision on `run_id` in this process."""
        return self._traces.get(run_id)

    async def submit(self, key: str, pending: Pending) -> None:
        """Decide `pending` in its lane's turn (`key`: its run id); settled, or raise.

        When the caller's event was the first of its lane's share of a committed group,
        the after-commit work of that share is done here before returning.
        """
        self._lanes.add(key, pending)
        try:
            while not pending.done:
                if not pending.taken and self._leaders < self._max_leaders:
                    await self._lead()
                    continue
                await pending.wake.wait()
                pending.wake = anyio.Event()
        finally:
            if not pending.done:
                pending.abandoned = True
                self._lanes.remove(key, pending)
        if pending.error is not None:
            raise pending.error
        if pending.owns is not None:
            await self._after_commit(pending.owns)

    # --- one group -----------------------------------------------------------------------

    async def _lead(self) -> None:
        self._leaders += 1
        lanes = [_Lane(key, pendings) for key, pendings in self._lanes.take(self._max_runs)]
        try:
            await self._commit(lanes)
        except BaseException as exc:
            _fail_unsettled(lanes, _for_follower(exc))
            raise
        finally:
            for lane in lanes:
                for pending in lane.pendings:
                    pending.wake.set()
            self._leaders -= 1
            if (oldest := self._lanes.oldest()) is not None:
                oldest.wake.set()  # a slot is free: the oldest waiting event leads next

    async def _commit(self, lanes: list[_Lane]) -> None:
        """Decide `lanes` in one transaction; if it fails, each lane in one of its own."""
        try:
            await self._decide_together(lanes)
        except Exception as exc:  # noqa: BLE001 - decided again alone, or the lane's own
            if len(lanes) == 1:
                self._fail_lane(lanes[0], exc)
                return
            for lane in lanes:
                try:
                    await self._decide_together([lane])
                except Exception as alone:  # noqa: BLE001 - it is that lane's own outcome
                    self._fail_lane(lane, alone)

    async def _decide_together(self, lanes: list[_Lane]) -> None:
        runs = [lane.key for lane in lanes if lane.pendings[0].create is None]
        try:
            async with self._store.deciding(runs) as batch:
                for lane in lanes:
                    await self._decide_lane(batch, lane)
        except BaseException:
            self._release_eager(lanes)
            raise
        for lane in lanes:
            self._settle(batch, lane)

    async def _decide_lane(self, batch: DecisionBatch, lane: _Lane) -> None:
        """Decide the lane's events on its run and record the writes in `batch`."""
        lane.decided, lane.changes, lane.error = [], None, None
        first = lane.pendings[0]
        try:
            if first.create is not None:
                lane.changes = self._claim_eager(lane, first.decide(first.create))
                batch.create(first.create, lane.changes)
                lane.decided = [first]
                return
            state = batch.state(lane.key)
            if first.items is not None:
                state = await batch.with_items(lane.key, first.items(state))
            self._lanes.take_followers(lane.key, lane.pendings)
            lane.changes, count = fold(state, lane.pendings)
        except Exception as exc:  # noqa: BLE001 - the first event's own failure
            lane.error = exc
            return
        lane.decided = lane.pendings[:count]
        if lane.changes is not None:
            lane.changes = self._claim_eager(lane, lane.changes)
            assert lane.changes is not None
            batch.write(lane.changes)

    def _claim_eager(self, lane: _Lane, changes: Changes | None) -> Changes | None:
        """`changes` with each dispatch this process's worker takes a slot for written
        leased (see `_eager` in the worker); the slots are the lane's until it settles."""
        eager = self.eager
        if eager is None or changes is None or not changes.outbox:
            return changes
        outbox: list[OutgoingMessage] = []
        for outgoing in changes.outbox:
            slot = eager.reserve(outgoing.channel, outgoing.message)
            if slot is None:
                outbox.append(outgoing)
                continue
            lane.eager.append(slot)
            outbox.append(msgspec.structs.replace(outgoing, lease_seconds=eager.lease_seconds))
        if not lane.eager:
            return changes
        return msgspec.structs.replace(changes, outbox=outbox)

    def _release_eager(self, lanes: Sequence[_Lane]) -> None:
        """Give back the worker slots of decisions that did not commit."""
        for lane in lanes:
            if self.eager is not None:
                for slot in lane.eager:
                    self.eager.release(slot)
            lane.eager = []

    def _start_eager(self, lane: _Lane, applied: Applied) -> None:
        """Hand the lane's committed, leased dispatches to this process's worker."""
        slots, lane.eager = lane.eager, []
        if not slots or self.eager is None:
            return
        leased = [record for record in applied.outbox if record.leased]
        for slot, record in zip(slots, leased, strict=True):
            self.eager.start(slot, record)

    def _settle(self, batch: DecisionBatch, lane: _Lane) -> None:
        """After the commit: each decided event's outcome; the rest wait for a later turn.
        The dispatches this process runs eagerly start here, whoever waits or not."""
        if lane.error is not None:
            self._release_eager([lane])
            self._fail_lane(lane, lane.error)
            return
        first = lane.pendings[0]
        if first.create is not None:
            run_id = first.create.id
            created = batch.created(run_id)
            first.settle(batch.applied(run_id), created=created)
        else:
            applied = batch.applied(lane.key) if lane.changes is not None else None
            for pending in lane.decided:
                pending.settle(applied)
        if lane.eager and first.applied is not None and (first.create is None or first.created):
            self._start_eager(lane, first.applied)
        self._release_eager([lane])  # a create that found its key taken wrote none
        self._lanes.put_back(lane.key, lane.pendings[len(lane.decided) :])
        owner = next((p for p in lane.decided if not p.abandoned), None)
        if owner is not None:
            owner.owns = lane

    def _fail_lane(self, lane: _Lane, error: BaseException) -> None:
        """The lane's first event fails with `error`; the others wait for a later turn
        (or fail too, when the run is not there for any of them)."""
        first, rest = lane.pendings[0], lane.pendings[1:]
        first.fail(error)
        lane.decided, lane.changes = [], None
        if first.create is None and isinstance(error, RunNotFound):
            for pending in rest:
                pending.fail(error)
            return
        self._lanes.put_back(lane.key, rest)

    # --- after the commit -------------------------------------------------------------

    async def _after_commit(self, lane: _Lane) -> None:
        """Relay, wake the timer loop, announce an end and count, for one lane's share."""
        applied = lane.decided[0].applied
        if applied is None or (lane.pendings[0].create is not None and not lane.decided[0].created):
            return
        for pending in lane.decided:
            decision = pending.outcome.decision if pending.outcome is not None else None
            if decision is not None and decision.changed and pending.workflow is not None:
                record_decision(self._metrics, decision, pending.workflow)
        if lane.changes is not None:
            self._wake_for(lane.changes.start_timers)
        if (traceparent := current_traceparent()) is not None:
            self._traces.put(applied.state.id, traceparent)
        if applied.state.status.is_terminal:
            self._finishes.ended(applied.state.id)
        await self._relay.publish([record for record in applied.outbox if not record.leased])

    def _wake_for(self, timers: Sequence[StartTimer]) -> None:
        if timers:
            self._alarm.notify(min(t.fire_at for t in timers))


def _fail_unsettled(lanes: Sequence[_Lane], error: BaseException) -> None:
    for lane in lanes:
        for pending in lane.pendings:
            if pending.taken and not pending.done:
                pending.fail(error)


def _for_follower(exc: BaseException) -> BaseException:
    """What the other callers of a failed group see: the error itself, or, when the leader
    was cancelled, a retryable `StoreUnavailable` (their decisions were rolled back)."""
    if isinstance(exc, Exception):
        return exc
    return StoreUnavailable("apply", "the transaction of its group was interrupted")


# --- the pure fold ------------------------------------------------------------------


def fold(state: RunState, batch: Sequence[Pending]) -> tuple[Changes | None, int]:
    """Decide each event of `batch` on the state the previous one left; (merged changes,
    how many events were decided).

    An event after the first whose decision touches map items stops the fold (it and
    the rest are left for a transaction of their own): item rows are written from the
    difference to what was loaded, which only holds for one decision. So does one after
    the first that raises: it is decided again at the head of its lane, where its failure
    is its own.
    """
    decided: list[Changes] = []
    for count, pending in enumerate(batch):
        try:
            changes = pending.decide(state)
        except Exception:
            if not count:
                raise
            return merge(decided), count
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
