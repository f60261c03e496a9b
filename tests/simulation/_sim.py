"""A seeded, single-threaded discrete-event simulation of orchestrator and workers.

Everything that is nondeterministic in production — message delays, duplicates,
redeliveries, worker outcomes and stalls, crashes between commit and publish, the clock
— comes from one `random.Random(seed)`, so a seed replays exactly. The engine logic
is real: the pure decider, the `Changes` mapping, the wire envelopes and the store (the
in-memory adapter, driven through its port in one task, so its answers are deterministic);
the broker and processes are small in-memory models of their ports' contracts.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio

from tests.simulation._checks import TERMINAL_TASK, InvariantBroken, check_decision
from tests.stores import apply, create_run
from treadle.domain.compile import Workflow, compile_workflow, parse_definition
from treadle.domain.decider import decide, new_run
from treadle.domain.events import (
    DispatchLost,
    DispatchTask,
    Event,
    RunStarted,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
)
from treadle.domain.state import ErrorInfo, RunState, RunStatus, TaskStatus
from treadle.messages import EVENTS_CHANNEL, decode, envelope, is_broadcast, to_message
from treadle.modules.orchestrator._changes import (
    changes_from_decision,
    fired_timer_cancel,
    with_cancelled,
)
from treadle.ports import Changes, DueTimer, OutboxRecord
from treadle.store.memory import MemoryStore

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
SWEEP_EVERY = 5.0
STALE_AFTER = 10.0
TIMER_POLL = 2.0
ACK_WAIT = 30.0  # an unacked delivery comes back after this (consumer crash, lost ack)
HORIZON = 20_000.0  # simulated seconds: a run not terminal by then is stuck
LEASE = 30.0  # a claimed timer's lease (its decision deletes it first in practice)
EVERYTHING = 100_000  # a page size no simulation reaches

RETRY = {"max_attempts": 4, "initial_interval": "1s", "backoff": 2.0, "max_interval": "8s"}
DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "sequence",
        "tasks": {
            "a": {"handler": "sim", "retry": RETRY, "timeout": "20s"},
            "b": {"handler": "sim", "after": ["a"], "retry": RETRY, "timeout": "20s"},
            "c": {"handler": "sim", "after": ["b"], "retry": RETRY, "timeout": "20s"},
        },
    },
    {
        "name": "fanout",
        "tasks": {
            "root": {"handler": "sim", "retry": RETRY, "timeout": "20s"},
            **{
                f"leaf{i}": {"handler": "sim", "after": ["root"], "retry": RETRY, "timeout": "20s"}
                for i in range(4)
            },
            "join": {"handler": "sim", "after": [f"leaf{i}" for i in range(4)], "timeout": "20s"},
        },
    },
    {
        "name": "napper",
        "tasks": {
            "first": {"handler": "sim", "retry": RETRY, "timeout": "20s"},
            "nap": {"type": "sleep", "duration": "15s", "after": ["first"]},
            "last": {"handler": "sim", "after": ["nap"], "retry": RETRY, "timeout": "20s"},
        },
    },
]


def compiled_workflows() -> dict[str, Workflow]:
    """The simulated workflows, compiled once (they are immutable)."""
    return {d["name"]: compile_workflow(parse_definition(d)) for d in DEFINITIONS}


@dataclass(frozen=True)
class Faults:
    """Probabilities (per message or decision) of each fault the injector can cause."""

    duplicate: float = 0.1
    redeliver: float = 0.1  # the consumer "crashed" before acking: back after ACK_WAIT
    crash_before_publish: float = 0.05  # committed, outbox unrelayed, delivery unacked
    crash_before_mark_sent: float = 0.05  # published, not marked sent: the sweeper repeats
    fail: float = 0.25  # a handler raises (retryable)
    stall: float = 0.05  # a worker stalls past the attempt timeout, then answers
    clock_jump: float = 0.02  # the clock leaps forward (per timer poll)
    wipe: float = 0.0  # in-process transport: a crash loses every message in flight
    quick: float = 0.3  # not a fault: a quick attempt's start travels in its result


@dataclass
class Stats:
    """What one simulation did, for the report."""

    decisions: int = 0
    messages: int = 0
    faults: Counter[str] = field(default_factory=Counter)


class Simulation:
    """Runs a few workflows to the end under faults; `run()` raises `InvariantBroken`."""

    def __init__(self, seed: int, faults: Faults, workflows: dict[str, Workflow]) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults
        self.workflows = workflows
        self.store = MemoryStore(clock=self.clock)
        self.decisions = 0
        self.stats = Stats()
        self.now = 0.0
        self._skew = 0.0  # clock jumps: the orchestrator's clock runs ahead of sim time
        self._queue: list[tuple[float, int, Callable[[], Awaitable[None]]]] = []
        self._seq = 0
        self._generation = 0  # bumps when an in-process transport loses what it held
        self._in_flight = 0  # deliveries scheduled and not yet made
        self._runs = 0
        self.effects: Counter[tuple[str, str, int]] = Counter()
        self.outputs: dict[tuple[str, str, int], Any] = {}
        self.trace: list[str] = []

    # --- scheduler ----------------------------------------------------------------------

    def at(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        """Schedule `action` `delay` simulated seconds from now."""
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, action))

    def clock(self) -> datetime:
        """The orchestrator's clock: simulated time plus every jump so far."""
        return EPOCH + timedelta(seconds=self.now + self._skew)

    def run(self, runs: int = 4) -> Stats:
        """Start `runs` runs, simulate until everything settles, then check the end state."""
        stats: Stats = anyio.run(self._run, runs)
        return stats

    async def _run(self, runs: int) -> Stats:
        names = sorted(self.workflows)
        self._runs = runs
        for i in range(runs):
            self.at(self.rng.uniform(0, 5), lambda i=i: self._start(i, self.rng.choice(names)))
        self.at(SWEEP_EVERY, self._sweep)
        self.at(TIMER_POLL, self._timer_poll)
        while self._queue and not self._settled():
            at, _, action = heapq.heappop(self._queue)
            if at > HORIZON:
                break
            self.now = at
            await action()
        self.stats.decisions = self.decisions
        check_end_state(self)
        return self.stats

    def _settled(self) -> bool:
        # Cheapest first: this runs before every step, so it reads the store's data (an
        # observer's look, not a step of the engine's, and no round trip to the loop).
        data = self.store.data
        return (
            self._in_flight == 0
            and len(data.runs) == self._runs
            and all(r.status.is_terminal for r in data.runs.values())
            and all(row.sent_at is not None for row in data.outbox.values())
        )

    # --- the api and orchestrator ----------------------------------------------------------

    async def _start(self, i: int, name: str) -> None:
        workflow = self.workflows[name]
        run = new_run(workflow, run_id=f"run-{i}", version=1, input={"i": i}, now=self.clock())
        await create_run(self.store, run, lambda s: None)
        await self._decide(run.id, RunStarted(run_id=run.id))

    async def _decide(
        self,
        run_id: str,
        event: Event,
        redeliver: Callable[[], None] | None = None,
        timer: DueTimer | None = None,
    ) -> None:
        """Apply in one transaction, then relay; a crash may strike between the two."""
        cancel = fired_timer_cancel(timer) if timer is not None else None
        now = self.clock()

        def decision(before: RunState) -> Changes | None:
            decided = decide(self.workflows[before.workflow], before, event, now)
            changes = changes_from_decision(decided, source="sim")
            if cancel is not None:
                changes = with_cancelled(changes, before, cancel)
            if changes is None:
                return None
            check_decision(before, changes, event)
            self.decisions += 1
            return changes

        applied = await apply(self.store, run_id, decision)
        rows = applied.outbox if applied is not None else []
        self.trace.append(f"{self.now:9.2f} apply {type(event).__name__} {_about(event)}")
        if rows and self._roll("crash_before_publish"):
            if not self._crash() and redeliver is not None:
                redeliver()  # never acked: a durable broker hands it over again
            return
        await self._relay(rows)

    async def _relay(self, rows: list[OutboxRecord]) -> None:
        for row in rows:
            self._publish(row.channel, row.message.body)
        if rows and self._roll("crash_before_mark_sent"):
            self._crash()
            return
        if rows:
            await self.store.mark_sent([row.id for row in rows])

    def _crash(self) -> bool:
        """The orchestrator dies; True if the in-process transport lost what it held."""
        self.trace.append(f"{self.now:9.2f} crash")
        if not self._roll("wipe"):
            return False
        self._generation += 1
        self.at(self.rng.uniform(1, 10), self._recover)
        return True

    async def _recover(self) -> None:
        """Start-up recovery of the in-process transport: re-dispatch attempts in flight."""
        inflight = await self.store.inflight_attempts(EVERYTHING, None)
        for attempt in inflight:
            if attempt.item is None and attempt.attempt >= 1:
                lost = DispatchLost(
                    run_id=attempt.run_id, task_id=attempt.task_id, attempt=attempt.attempt
                )
                await self._decide(attempt.run_id, lost)

    async def _sweep(self) -> None:
        stale = self.clock() - timedelta(seconds=STALE_AFTER)
        unsent = await self.store.claim_unsent(stale, EVERYTHING)
        if unsent:
            self.trace.append(f"{self.now:9.2f} sweep {len(unsent)}")
            await self._relay(unsent)
        self.at(SWEEP_EVERY, self._sweep)

    async def _timer_poll(self) -> None:
        if self._roll("clock_jump"):
            self._skew += self.rng.choice([5.0, 30.0, 120.0])
        for timer in await self.store.claim_due_timers(self.clock(), EVERYTHING, LEASE):
            event = TimerFired(
                run_id=timer.run_id, kind=timer.kind, task_id=timer.task_id, attempt=timer.attempt
            )
            await self._decide(timer.run_id, event, timer=timer)
        self.at(await self._next_poll(), self._timer_poll)

    async def _next_poll(self) -> float:
        """Like the timer loop: sleep until the next timer, at most one poll interval."""
        soonest = await self.store.next_timer_at()
        if soonest is None:
            return TIMER_POLL
        return min(TIMER_POLL, max(0.1, (soonest - self.clock()).total_seconds()))

    # --- the broker -----------------------------------------------------------------------

    def _publish(self, channel: str, body: bytes) -> None:
        self.stats.messages += 1
        copies = 2 if self._roll("duplicate") else 1
        for _ in range(copies):
            self._send(channel, body, self.rng.expovariate(2.0))

    def _send(self, channel: str, body: bytes, delay: float) -> None:
        generation = self._generation
        self._in_flight += 1

        async def deliver() -> None:
            self._in_flight -= 1
            if generation != self._generation:
                return  # the in-process transport lost it in a crash
            if self._roll("redeliver"):
                self._send(channel, body, ACK_WAIT)  # taken, never acked: comes back
                return
            await self._consume(channel, body)

        self.at(delay, deliver)

    async def _consume(self, channel: str, body: bytes) -> None:
        if is_broadcast(channel):
            return  # task.cancel: the simulated workers finish every attempt; it only saves work
        payload = decode(body).payload
        if channel == EVENTS_CHANNEL:
            assert isinstance(payload, TaskStarted | TaskCompleted | TaskFailed)
            again = lambda: self._send(channel, body, ACK_WAIT)  # noqa: E731
            await self._decide(payload.run_id, payload, again)
            return
        assert isinstance(payload, DispatchTask)
        self._work(payload)

    # --- workers ---------------------------------------------------------------------------

    def _work(self, dispatch: DispatchTask) -> None:
        """Publish TaskStarted (or, for a quick attempt, leave it to the result), run the
        "handler" for a while, publish its result."""
        started = TaskStarted(
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            worker="sim",
            started_at=self.clock(),
        )
        stall = self._roll("stall")
        carried = started.started_at if not stall and self._roll("quick") else None
        if carried is None:
            self._emit(started)
        seconds = self.rng.uniform(25, 60) if stall else self.rng.expovariate(1.0)
        generation = self._generation
        self.at(seconds, lambda: self._finish(dispatch, generation, carried))

    async def _finish(
        self, dispatch: DispatchTask, generation: int, started_at: datetime | None = None
    ) -> None:
        if generation != self._generation:
            return  # the worker died with the process (in-process transport)
        key = (dispatch.run_id, dispatch.task_id, dispatch.attempt)
        self.effects[key] += 1  # the side effect happens before the result is published
        result: TaskCompleted | TaskFailed
        if self._roll("fail"):
            error = ErrorInfo(type="Flaky", message="on purpose", retryable=True)
            result = TaskFailed(
                run_id=key[0],
                task_id=key[1],
                attempt=key[2],
                error=error,
                worker="sim",
                started_at=started_at,
            )
        else:
            output = {"run": key[0], "task": key[1], "attempt": key[2]}
            self.outputs.setdefault(key, output)
            result = TaskCompleted(
                run_id=key[0],
                task_id=key[1],
                attempt=key[2],
                output=output,
                worker="sim",
                started_at=started_at,
            )
        self._emit(result)

    def _emit(self, event: TaskStarted | TaskCompleted | TaskFailed) -> None:
        self._publish(EVENTS_CHANNEL, to_message(envelope(event, source="sim")).body)

    def _roll(self, fault: str) -> bool:
        hit = self.rng.random() < getattr(self.faults, fault)
        if hit:
            self.stats.faults[fault] += 1
        return hit


def _about(event: Event) -> str:
    task = getattr(event, "task_id", None)
    return f"{event.run_id} {task or ''} {getattr(event, 'attempt', '')}"


def check_end_state(sim: Simulation) -> None:
    """Every run terminal, one terminal state per task, outputs from one attempt, all sent."""
    data = sim.store.data
    for run in data.runs.values():
        if not run.status.is_terminal:
            raise InvariantBroken(f"{run.id} is {run.status} after {sim.now:.0f}s")
        history = [entry for _, entry in data.history[run.id]]
        completions = Counter(h.task_id for h in history if h.type == "task.completed")
        for task in run.tasks.values():
            if completions[task.task_id] > 1:
                raise InvariantBroken(f"{run.id}/{task.task_id} completed twice in the history")
            if run.status is RunStatus.COMPLETED and task.status not in TERMINAL_TASK:
                raise InvariantBroken(f"{run.id}/{task.task_id} is {task.status} in a done run")
            if task.status is TaskStatus.COMPLETED and task.type == "handler":
                _check_output(sim, run.id, task.task_id, task.attempt, task.output)
    unsent = [row_id for row_id, row in data.outbox.items() if row.sent_at is None]
    if unsent:
        raise InvariantBroken(f"outbox rows never sent: {unsent}")


def _check_output(sim: Simulation, run_id: str, task_id: str, attempt: int, output: Any) -> None:
    key = (run_id, task_id, attempt)
    if sim.effects[key] < 1 or sim.outputs.get(key) != output:
        raise InvariantBroken(f"{run_id}/{task_id}: output {output} is not attempt {attempt}'s")
