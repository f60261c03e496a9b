"""A seeded, single-threaded discrete-event simulation of orchestrator and workers.

Everything that is nondeterministic in production — message delays, duplicates,
redeliveries, worker outcomes and stalls, crashes between commit and publish, the clock
— comes from one `random.Random(seed)`, so a seed replays exactly. The engine logic
is real: the pure decider, the `Changes` mapping and the wire envelopes; the store,
broker and processes are small in-memory models of their ports' contracts.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from app.domain.compile import Workflow, compile_workflow, parse_definition
from app.domain.decider import new_run
from app.domain.events import (
    DispatchLost,
    DispatchTask,
    Event,
    RunStarted,
    TaskCompleted,
    TaskFailed,
    TaskStarted,
    TimerFired,
)
from app.domain.state import ErrorInfo, RunStatus, TaskStatus
from app.messages import EVENTS_CHANNEL, decode, envelope, is_broadcast, to_message
from app.modules.orchestrator._changes import fired_timer_cancel
from app.ports import DueTimer
from tests.simulation._store import TERMINAL_TASK, InvariantBroken, OutboxRow, SimStore

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)
SWEEP_EVERY = 5.0
STALE_AFTER = 10.0
TIMER_POLL = 2.0
ACK_WAIT = 30.0  # an unacked delivery comes back after this (consumer crash, lost ack)
HORIZON = 20_000.0  # simulated seconds: a run not terminal by then is stuck

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
        self.store = SimStore(workflows)
        self.stats = Stats()
        self.now = 0.0
        self._skew = 0.0  # clock jumps: the orchestrator's clock runs ahead of sim time
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._generation = 0  # bumps when an in-process transport loses what it held
        self._in_flight = 0  # deliveries scheduled and not yet made
        self._runs = 0
        self.effects: Counter[tuple[str, str, int]] = Counter()
        self.outputs: dict[tuple[str, str, int], Any] = {}
        self.trace: list[str] = []

    # --- scheduler ----------------------------------------------------------------------

    def at(self, delay: float, action: Callable[[], None]) -> None:
        """Schedule `action` `delay` simulated seconds from now."""
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, action))

    def clock(self) -> datetime:
        """The orchestrator's clock: simulated time plus every jump so far."""
        return EPOCH + timedelta(seconds=self.now + self._skew)

    def run(self, runs: int = 4) -> Stats:
        """Start `runs` runs, simulate until everything settles, then check the end state."""
        names = sorted(self.store.workflows)
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
            action()
        self.stats.decisions = self.store.decisions
        check_end_state(self)
        return self.stats

    def _settled(self) -> bool:
        # Cheapest first: this runs before every step.
        return (
            self._in_flight == 0
            and len(self.store.runs) == self._runs
            and all(r.status.is_terminal for r in self.store.runs.values())
            and all(row.sent for row in self.store.outbox)
        )

    # --- the api and orchestrator ----------------------------------------------------------

    def _start(self, i: int, name: str) -> None:
        workflow = self.store.workflows[name]
        run = new_run(workflow, run_id=f"run-{i}", version=1, input={"i": i}, now=self.clock())
        self.store.create(run)
        self._decide(run.id, RunStarted(run_id=run.id))

    def _decide(
        self,
        run_id: str,
        event: Event,
        redeliver: Callable[[], None] | None = None,
        timer: DueTimer | None = None,
    ) -> None:
        """Apply in one "transaction", then relay; a crash may strike between the two."""
        cancel = fired_timer_cancel(timer) if timer is not None else None
        rows = self.store.apply(run_id, event, self.clock(), also_cancel=cancel)
        self.trace.append(f"{self.now:9.2f} apply {type(event).__name__} {_about(event)}")
        if rows and self._roll("crash_before_publish"):
            if not self._crash() and redeliver is not None:
                redeliver()  # never acked: a durable broker hands it over again
            return
        self._relay(rows)

    def _relay(self, rows: list[OutboxRow]) -> None:
        for row in rows:
            self._publish(row.message.channel, row.message.message.body)
        if rows and self._roll("crash_before_mark_sent"):
            self._crash()
            return
        for row in rows:
            row.sent = True

    def _crash(self) -> bool:
        """The orchestrator dies; True if the in-process transport lost what it held."""
        self.trace.append(f"{self.now:9.2f} crash")
        if not self._roll("wipe"):
            return False
        self._generation += 1
        self.at(self.rng.uniform(1, 10), self._recover)
        return True

    def _recover(self) -> None:
        """Start-up recovery of the in-process transport: re-dispatch attempts in flight."""
        for run_id, task_id, attempt in self.store.inflight():
            lost = DispatchLost(run_id=run_id, task_id=task_id, attempt=attempt)
            self._decide(run_id, lost)

    def _sweep(self) -> None:
        stale = self.clock() - timedelta(seconds=STALE_AFTER)
        unsent = [r for r in self.store.outbox if not r.sent and r.created_at <= stale]
        if unsent:
            self.trace.append(f"{self.now:9.2f} sweep {len(unsent)}")
            self._relay(unsent)
        self.at(SWEEP_EVERY, self._sweep)

    def _timer_poll(self) -> None:
        if self._roll("clock_jump"):
            self._skew += self.rng.choice([5.0, 30.0, 120.0])
        for start in self.store.due_timers(self.clock()):
            timer = DueTimer(
                run_id=start.run_id,
                kind=start.kind,
                task_id=start.task_id,
                attempt=start.attempt,
                item=start.item,
                fire_at=start.fire_at,
            )
            event = TimerFired(
                run_id=timer.run_id, kind=timer.kind, task_id=timer.task_id, attempt=timer.attempt
            )
            self._decide(timer.run_id, event, timer=timer)
        self.at(self._next_poll(), self._timer_poll)

    def _next_poll(self) -> float:
        """Like the timer loop: sleep until the next timer, at most one poll interval."""
        if not self.store.timers:
            return TIMER_POLL
        soonest = min(t.fire_at for t in self.store.timers.values())
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

        def deliver() -> None:
            self._in_flight -= 1
            if generation != self._generation:
                return  # the in-process transport lost it in a crash
            if self._roll("redeliver"):
                self._send(channel, body, ACK_WAIT)  # taken, never acked: comes back
                return
            self._consume(channel, body)

        self.at(delay, deliver)

    def _consume(self, channel: str, body: bytes) -> None:
        if is_broadcast(channel):
            return  # task.cancel: the simulated workers finish every attempt; it only saves work
        payload = decode(body).payload
        if channel == EVENTS_CHANNEL:
            assert isinstance(payload, TaskStarted | TaskCompleted | TaskFailed)
            again = lambda: self._send(channel, body, ACK_WAIT)  # noqa: E731
            self._decide(payload.run_id, payload, again)
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

    def _finish(
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
    store = sim.store
    for run in store.runs.values():
        if not run.status.is_terminal:
            raise InvariantBroken(f"{run.id} is {run.status} after {sim.now:.0f}s")
        completions = Counter(t for kind, t, _ in store.history[run.id] if kind == "task.completed")
        for task in run.tasks.values():
            if completions[task.task_id] > 1:
                raise InvariantBroken(f"{run.id}/{task.task_id} completed twice in the history")
            if run.status is RunStatus.COMPLETED and task.status not in TERMINAL_TASK:
                raise InvariantBroken(f"{run.id}/{task.task_id} is {task.status} in a done run")
            if task.status is TaskStatus.COMPLETED and task.type == "handler":
                _check_output(sim, run.id, task.task_id, task.attempt, task.output)
    unsent = [row.id for row in store.outbox if not row.sent]
    if unsent:
        raise InvariantBroken(f"outbox rows never sent: {unsent}")


def _check_output(sim: Simulation, run_id: str, task_id: str, attempt: int, output: Any) -> None:
    key = (run_id, task_id, attempt)
    if sim.effects[key] < 1 or sim.outputs.get(key) != output:
        raise InvariantBroken(f"{run_id}/{task_id}: output {output} is not attempt {attempt}'s")
