"""`RunService`: starts and steers runs by deciding events on them.

Every change to a run is an event given to `apply_event` (a new run: `start_run`), which
wraps the pure decider for it and hands it to the decision pipeline (`_pipeline`): that
locks the run in a store transaction, decides, writes the messages and timers in the same
transaction, and after the commit relays the messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from treadle.config import LimitsSettings, OrchestratorSettings
from treadle.domain._map_query import items_wanted
from treadle.domain.compile import (
    Workflow,
    compile_workflow,
    definition_digest,
    parse_definition,
    validate_input,
)
from treadle.domain.decider import decide, new_run
from treadle.domain.definitions import WorkflowDefinition
from treadle.domain.errors import (
    DefinitionInvalid,
    IdempotencyConflict,
    RunNotActive,
    RunNotFound,
    SignalNotAccepted,
)
from treadle.domain.events import (
    CancelRequested,
    CancelTimer,
    Decision,
    Event,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
    RunStarted,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
    TimerFired,
)
from treadle.domain.state import RunState
from treadle.domain.tags import check_tags, merge_tags, tag_issues
from treadle.modules.orchestrator._changes import (
    changes_from_decision,
    fired_timer_cancel,
    with_cancelled,
)
from treadle.modules.orchestrator._finishes import RunFinishes
from treadle.modules.orchestrator._ids import new_run_id
from treadle.modules.orchestrator._limits import check_json_size
from treadle.modules.orchestrator._pipeline import (
    Decide,
    DecisionPipeline,
    ItemsWanted,
    Lru,
    Outcome,
    Pending,
)
from treadle.modules.orchestrator._relay import Relay
from treadle.modules.orchestrator._timers import TimerAlarm
from treadle.observability import Telemetry, current_traceparent, get_logger
from treadle.ports import (
    Applied,
    Changes,
    Clock,
    DueTimer,
    EagerWorker,
    StateStore,
    StoredWorkflow,
)

log = get_logger(__name__)


class RunService:
    """The `RunControl` port, and the one way events reach runs in this process."""

    def __init__(
        self,
        store: StateStore,
        relay: Relay,
        clock: Clock,
        settings: OrchestratorSettings,
        *,
        source: str,
        alarm: TimerAlarm | None = None,
        cache_size: int = 256,
        telemetry: Telemetry | None = None,
        limits: LimitsSettings | None = None,
    ) -> None:
        self._store = store
        self._relay = relay
        self._clock = clock
        self._settings = settings
        self._limits = limits or LimitsSettings()
        self._source = source
        self.alarm = alarm or TimerAlarm()
        # Versions are immutable and a run never changes workflow: both caches never go stale.
        self._workflows: Lru[tuple[str, int], Workflow] = Lru(cache_size)
        self._run_workflows: Lru[str, tuple[str, int]] = Lru(cache_size * 16)
        self._telemetry = telemetry or Telemetry.off("orchestrator")
        self.finishes = RunFinishes()
        """Wakes the API's long polls when a decision here ends a run."""
        self._pipeline = DecisionPipeline(
            store,
            relay,
            alarm=self.alarm,
            finishes=self.finishes,
            metrics=self._telemetry.metrics,
            traces=cache_size * 16,
        )

    def use_eager(self, worker: EagerWorker | None) -> None:
        """Hand the dispatches decided here to this process's `worker` while it takes them
        (None: publish every one to the broker)."""
        self._pipeline.eager = worker

    @property
    def relay(self) -> Relay:
        """The relay that publishes what this service's decisions write."""
        return self._relay

    # --- RunControl -------------------------------------------------------------------

    async def register_workflow(self, definition: dict[str, Any]) -> tuple[StoredWorkflow, bool]:
        """Validate and store a definition; raises `DefinitionInvalid`, `LimitExceeded`."""
        most = self._limits.max_definition_bytes
        check_json_size(definition, most, limit="max_definition_bytes", what="the definition")
        defn = parse_definition(definition)
        self._compile(defn, stored=False)
        if defn.tags:
            issues = tag_issues(defn.tags)
            if issues:
                raise DefinitionInvalid(issues)
        return await self._store.save_workflow(defn.name, definition, definition_digest(defn))

    async def start_run(
        self,
        workflow: str,
        version: int | None,
        input: Any,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        *,
        parent_run_id: str | None = None,
        parent_task_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunState, bool]:
        """Create and start a run in one transaction, or return the run for this key.

        A child run (of a `workflow` task) names its parent run and task. `tags` go over
        the definition's default tags; raises `TagsInvalid` when the merge is too many.
        """
        most = self._limits.max_run_input_bytes
        check_json_size(input, most, limit="max_run_input_bytes", what="the run input")
        stored = await self._store.get_workflow(workflow, version)
        compiled = self._compiled(stored)
        validate_input(compiled, input)
        run_tags = check_tags(merge_tags(stored.definition.get("tags"), tags))
        now = self._clock.now()
        run = new_run(
            compiled,
            run_id=new_run_id(now),
            version=stored.version,
            input=input,
            now=now,
            idempotency_key=idempotency_key,
            parent_run_id=parent_run_id,
            parent_task_id=parent_task_id,
        )
        if run_tags:
            run = msgspec.structs.replace(run, tags=run_tags)
        outcome = Outcome()
        with self._telemetry.decision(
            run.id, "run.started", traceparent=traceparent, workflow=stored.name
        ):
            started = RunStarted(run_id=run.id)
            decide_start = self._decider(compiled, started, outcome, current_traceparent())
            pending = Pending(
                decide_start, batchable=False, create=run, outcome=outcome, workflow=compiled
            )
            # Known before the commit, so the run's first result finds it here.
            self._run_workflows.put(run.id, (stored.name, stored.version))
            lane = run.id if idempotency_key is None else f"key:{idempotency_key}"
            await self._pipeline.submit(lane, pending)
            applied, created = pending.applied, pending.created
            assert applied is not None, "a create settles with the run or the key's holder"
            if not created:
                _check_same_start(applied.state, run, version)
            else:
                self._telemetry.metrics.run_started(stored.name)
                log.info("run started", version=stored.version)
        return applied.state, created

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState:
        """Request cancellation; raises `RunNotFound`, `RunNotActive`."""
        return await self._steer(run_id, CancelRequested(run_id=run_id, reason=reason), "cancel")

    async def signal_run(self, run_id: str, name: str, payload: Any) -> RunState:
        """Deliver a signal; raises `RunNotFound`, `SignalNotAccepted` (a name the run's
        definition neither waits for nor accepts), `RunNotActive`, `LimitExceeded`."""
        most = self._limits.max_signal_payload_bytes
        check_json_size(payload, most, limit="max_signal_payload_bytes", what="the signal payload")
        compiled = await self._workflow_of_run(run_id)
        if name not in compiled.signals and not compiled.accepts_any_signal:
            run = await self._store.get_run(run_id)
            if run.status.is_terminal:  # an ended run refuses every signal: a conflict
                raise RunNotActive(run_id, str(run.status), "signal")
            raise SignalNotAccepted(run_id, name, sorted(compiled.signals))
        event = SignalReceived(run_id=run_id, name=name, payload=payload)
        return await self._steer(run_id, event, "signal")

    async def retry_run(self, run_id: str) -> RunState:
        """Resume a failed or timed-out run from its failed tasks; raises `RunNotActive`."""
        applied, seen = await self.apply_event(run_id, RetryRequested(run_id=run_id))
        if applied is None:
            assert seen is not None, "the store decides on the run's state or raises"
            raise RunNotActive(run_id, str(seen.status), "retry")
        return applied.state

    async def pause_run(self, run_id: str) -> RunState:
        """Start nothing new until resumed; raises `RunNotFound`, `RunNotActive`."""
        return await self._steer(run_id, PauseRequested(run_id=run_id), "pause")

    async def resume_run(self, run_id: str) -> RunState:
        """Start what became ready while paused; raises `RunNotFound`, `RunNotActive`."""
        return await self._steer(run_id, ResumeRequested(run_id=run_id), "resume")

    async def nesting_depth(self, run_id: str, limit: int) -> int:
        """How many parents `run_id` has above it (0 for a top-level run), counted to `limit`.

        Walked through the parent ids, one read each: only a child run's start asks, and
        the walk stops at `limit`. A parent that is gone ends the chain.
        """
        depth = 0
        while depth < limit:
            try:
                run = await self._store.get_run(run_id)
            except RunNotFound:
                return depth
            if run.parent_run_id is None:
                return depth
            depth, run_id = depth + 1, run.parent_run_id
        return depth

    # --- events -----------------------------------------------------------------------

    async def apply_event(
        self,
        run_id: str,
        event: Event,
        *,
        traceparent: str | None = None,
        also_cancel: CancelTimer | None = None,
    ) -> tuple[Applied | None, RunState | None]:
        """Apply one event to its run; (what was committed or None, the state decided on).

        Raises `RunNotFound`, and the store's errors.
        """
        compiled = await self._workflow_of_run(run_id)
        outcome = Outcome()
        with self._telemetry.decision(
            run_id,
            _event_type(event),
            traceparent=traceparent or self._pipeline.trace_of(run_id),
            workflow=compiled.name,
        ):
            # Messages written by this decision carry its span, read here because the
            # pipeline may decide it in another caller's task, where the context is not ours.
            decider = self._decider(compiled, event, outcome, current_traceparent(), also_cancel)
            batchable = also_cancel is None and isinstance(event, _BATCHABLE)
            pending = Pending(
                decider,
                batchable=batchable,
                items=items_for(event),
                outcome=outcome,
                workflow=compiled,
            )
            await self._pipeline.submit(run_id, pending)
        return (pending.applied if pending.changed else None), outcome.state

    async def fire_timer(self, timer: DueTimer) -> None:
        """Apply a due timer to its run, deleting the timer row in the same transaction."""
        event = TimerFired(
            run_id=timer.run_id,
            kind=timer.kind,
            task_id=timer.task_id,
            attempt=timer.attempt,
            item=timer.item,
        )
        await self.apply_event(
            timer.run_id,
            event,
            traceparent=timer.traceparent,
            also_cancel=fired_timer_cancel(timer),
        )

    # --- helpers ----------------------------------------------------------------------

    async def _steer(self, run_id: str, event: Event, action: str) -> RunState:
        applied, seen = await self.apply_event(run_id, event)
        state = applied.state if applied is not None else seen
        assert state is not None, "the store decides on the run's state or raises"
        if applied is None and state.status.is_terminal:
            raise RunNotActive(run_id, str(state.status), action)
        return state

    def _decider(
        self,
        compiled: Workflow,
        event: Event,
        outcome: Outcome,
        traceparent: str | None,
        also_cancel: CancelTimer | None = None,
    ) -> Decide:
        def decide_in_transaction(state: RunState) -> Changes | None:
            decision = with_trace_id(decide(compiled, state, event, self._clock.now()), traceparent)
            changes = changes_from_decision(decision, source=self._source, traceparent=traceparent)
            if also_cancel is not None:
                changes = with_cancelled(changes, state, also_cancel)
            outcome.state, outcome.decision = state, decision
            return changes

        return decide_in_transaction

    def _compiled(self, stored: StoredWorkflow) -> Workflow:
        key = (stored.name, stored.version)
        compiled = self._workflows.get(key)
        if compiled is None:
            compiled = self._compile(parse_definition(stored.definition), stored=True)
            self._workflows.put(key, compiled)
        return compiled

    def _compile(self, defn: WorkflowDefinition, *, stored: bool) -> Workflow:
        limits = self._limits.domain()
        if stored:
            # The task count was checked when it was registered; a lower limit set since
            # must not strand the runs of a version that is already in use.
            limits = msgspec.structs.replace(
                limits, max_tasks=max(limits.max_tasks, len(defn.tasks))
            )
        return compile_workflow(
            defn,
            default_task_timeout=self._settings.default_task_timeout,
            default_schedule_to_start=self._settings.default_schedule_to_start_timeout,
            limits=limits,
        )

    async def _workflow_of_run(self, run_id: str) -> Workflow:
        key = self._run_workflows.get(run_id)
        if key is None:
            run = await self._store.get_run(run_id)
            key = (run.workflow, run.version)
            self._run_workflows.put(run_id, key)
        compiled = self._workflows.get(key)
        if compiled is None:
            compiled = self._compiled(await self._store.get_workflow(*key))
        return compiled


_MAP_CONTROL = (ResumeRequested, RetryRequested)
# Worker results: the events that arrive for one run in bursts (see `_pipeline`).
_BATCHABLE = (TaskStarted, TaskCompleted, TaskFailed, TaskHeartbeat)


def _check_same_start(existing: RunState, asked: RunState, version: int | None) -> None:
    """Raise `IdempotencyConflict` when a reused key asks for another workflow or input.

    As Stripe does: the same key with the same request is the same run (a retry); with a
    different one it is a client's mistake, and answering with the other run would hide
    it. A request without a version matches whichever version the run pinned.
    """
    assert existing.idempotency_key is not None, "found by its key"
    differs = None
    if existing.workflow != asked.workflow:
        differs = "workflow"
    elif version is not None and existing.version != version:
        differs = "version"
    elif _canonical(existing.input) != _canonical(asked.input):
        differs = "input"
    if differs is not None:
        raise IdempotencyConflict(existing.idempotency_key, existing.id, differs)


def _canonical(value: Any) -> bytes:
    return msgspec.json.encode(value, order="deterministic")


def items_for(event: Event) -> ItemsWanted | None:
    """What the store loads of map items for `event` (None: it never concerns map items).

    Besides item events, a resume refills running maps and a retry re-runs failed ones.
    """
    if getattr(event, "item", None) is None and not isinstance(event, _MAP_CONTROL):
        return None
    return lambda state: items_wanted(state, event)


def _event_type(event: Event) -> str:
    """The event's wire tag (`task.completed`), for span names and logs."""
    return str(type(event).__struct_config__.tag)


def with_trace_id(decision: Decision, traceparent: str | None) -> Decision:
    """Stamp the run's trace id on the history this decision writes (the dashboard shows it).

    A W3C traceparent is `version-traceid-spanid-flags`; entries whose data is not a
    mapping keep it as it is.
    """
    parts = traceparent.split("-") if traceparent else []
    if len(parts) != 4 or not decision.history:
        return decision
    trace_id = parts[1]
    stamped = [
        msgspec.structs.replace(entry, data={**(entry.data or {}), "trace_id": trace_id})
        if entry.data is None or isinstance(entry.data, dict)
        else entry
        for entry in decision.history
    ]
    return msgspec.structs.replace(decision, history=stamped)
