"""The internal ports. A module reaches another module or an adapter only through these.

Signatures use primitives and msgspec Structs, never a driver's types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import anyio
import msgspec

from treadle.domain.api_keys import ApiKey
from treadle.domain.events import CancelTimer, HistoryEntry, StartTimer, TimerKind
from treadle.domain.keys import AttemptFields, TimerFields
from treadle.domain.schedules import Backfill, Schedule
from treadle.domain.state import ErrorInfo, Heartbeat, ItemQuery, RunState
from treadle.messages import Envelope, Message

# --- shared records -----------------------------------------------------------------

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a list; `next_cursor` is None on the last page."""

    items: list[T]
    next_cursor: str | None = None


class StoredWorkflow(msgspec.Struct, frozen=True, kw_only=True):
    """A registered version of a workflow definition (the definition as JSON-able data)."""

    name: str
    version: int
    definition: dict[str, Any]
    digest: str
    created_at: datetime


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A run without its tasks, for lists."""

    id: str
    workflow: str
    version: int
    status: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    idempotency_key: str | None = None
    paused: bool = False
    tags: dict[str, str] = {}


class RunFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which runs a list (or a bulk operation) is about; every given field must match."""

    workflow: str | None = None
    status: str | None = None
    idempotency_key: str | None = None
    created_after: datetime | None = None
    """Created at or after this."""
    created_before: datetime | None = None
    """Created before this."""
    tags: dict[str, str] = {}
    """Every one of these tags, with this value."""


class RunCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Runs per status (every status present), each at most `cap`; `capped` if one was cut."""

    counts: dict[str, int]
    capped: bool
    cap: int


class OutboxRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A message written in a decision transaction, to publish after commit."""

    id: int
    channel: str
    message: Message
    leased: bool = False
    """Written leased (`OutgoingMessage.lease_seconds`): this process runs it eagerly."""


class OutgoingMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message the decision wants published on `channel` (becomes an outbox row)."""

    channel: str
    message: Message
    lease_seconds: float | None = None
    """A dispatch this process's own worker runs eagerly: its row stays unsent, leased for
    this long (renewed while it runs), so no sweeper publishes it unless the lease runs
    out (the process died)."""


class DueTimer(msgspec.Struct, TimerFields, frozen=True, kw_only=True):
    """A durable timer whose time has come, claimed by one orchestrator for a lease."""

    run_id: str
    kind: TimerKind
    task_id: str | None
    attempt: int
    fire_at: datetime
    item: int | None = None
    """The item index of a map item's timer."""
    traceparent: str | None = None
    """The trace context of the decision that started the timer (None before 0007)."""


class InflightAttempt(msgspec.Struct, AttemptFields, frozen=True, kw_only=True):
    """A task attempt (or a map item's) that is scheduled or running according to the store."""

    run_id: str
    task_id: str
    attempt: int
    item: int | None = None
    """The item index when the attempt is one of a `map` task's items."""


class Changes(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one decision writes, atomically, beside the new run state.

    The map items in `state.map_items` that differ from those loaded are upserted.
    """

    state: RunState
    history: Sequence[HistoryEntry] = ()
    outbox: Sequence[OutgoingMessage] = ()
    start_timers: Sequence[StartTimer] = ()
    cancel_timers: Sequence[CancelTimer] = ()
    cancel_items: Sequence[str] = ()
    """Map tasks whose unfinished items become `cancelled` (their rows are not loaded)."""
    traceparent: str | None = None
    """The deciding span's context: the timers started keep it, so their firing joins the
    run's trace on whichever orchestrator claims them."""


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """What a committed decision produced: the state and the outbox rows to relay."""

    state: RunState
    outbox: list[OutboxRecord]


class MapItemRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One map item, as the items page of the API lists it."""

    index: int
    status: str
    attempt: int
    input: Any = None
    output: Any = None
    error: ErrorInfo | None = None
    scheduled_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat: Heartbeat | None = None


# --- state store ----------------------------------------------------------------------


class WorkflowStore(Protocol):
    """Registered workflow definitions, versioned by content."""

    async def save_workflow(
        self, name: str, definition: dict[str, Any], digest: str
    ) -> tuple[StoredWorkflow, bool]:
        """Store a new version unless the latest has this digest; (workflow, created)."""
        ...

    async def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        """The given version, or the latest; raises `WorkflowNotFound`."""
        ...

    async def list_workflows(self, limit: int, cursor: str | None) -> Page[StoredWorkflow]:
        """The latest version of each workflow, by name."""
        ...

    async def list_versions(
        self, name: str, limit: int, cursor: str | None
    ) -> Page[StoredWorkflow]:
        """Every version of one workflow, newest first; raises `WorkflowNotFound`."""
        ...


class RunStore(Protocol):
    """Reads of runs for the API and the CLI."""

    async def get_run(self, run_id: str) -> RunState:
        """The run with all its tasks; raises `RunNotFound`."""
        ...

    async def get_run_bounded(self, run_id: str, most_bytes: int) -> RunState:
        """The run with its tasks, each input and output over `most_bytes` as JSON an
        `OmittedValue`; raises `RunNotFound`."""
        ...

    async def get_value(
        self, run_id: str, task_id: str | None, item: int | None, field: str
    ) -> str | None:
        """The stored JSON of the run's (or a task's, or a map item's) `input`, `output` or
        `error`, None for null; raises `RunNotFound`, `TaskNotFound`."""
        ...

    async def list_runs(
        self, where: RunFilter, *, limit: int, cursor: str | None
    ) -> Page[RunSummary]:
        """The runs `where` matches, newest first; raises `InvalidCursor`."""
        ...

    async def count_runs(
        self, *, workflow: str | None, created_after: datetime | None, cap: int
    ) -> RunCounts:
        """How many runs have each status, counting at most `cap + 1` rows per status."""
        ...

    async def list_history(self, run_id: str, limit: int, cursor: str | None) -> Page[HistoryEntry]:
        """A run's history, oldest first; raises `RunNotFound`, `InvalidCursor`."""
        ...

    async def list_map_items(
        self,
        run_id: str,
        task_id: str,
        limit: int,
        cursor: str | None,
        *,
        most_bytes: int | None = None,
        status: str | None = None,
        from_index: int | None = None,
    ) -> Page[MapItemRecord]:
        """A map task's items by index from `from_index` (only those in `status` when given),
        each input and output over `most_bytes` as JSON an `OmittedValue`; raises
        `RunNotFound`, `TaskNotFound`, `InvalidCursor`."""
        ...

    async def list_timers(self, run_id: str) -> list[DueTimer]:
        """The run's durable timers not fired yet (leased ones too), earliest first: what
        its tasks wait for (a retry's backoff, a sleep, a signal's timeout)."""
        ...


class OmittedValue(msgspec.Struct, frozen=True, kw_only=True):
    """A value a bounded read left in the store: only its size as JSON came back."""

    size: int
    """Bytes of its JSON."""


class DecisionBatch(Protocol):
    """One decision transaction: the runs it holds locked, and the writes it commits.

    Entered through `DecisionStore.deciding`: read each locked run, record what was
    decided on it (or a new run), and leave the block to commit every write at once; an
    exception inside the block rolls them all back. What each write committed can be read
    once the block has ended.
    """

    def state(self, run_id: str) -> RunState:
        """The locked run as stored, without map items; raises `RunNotFound`."""
        ...

    async def with_items(self, run_id: str, query: ItemQuery) -> RunState:
        """The locked run with the map items `query` names loaded; raises `RunNotFound`."""
        ...

    def write(self, changes: Changes) -> None:
        """Record a decision on a locked run: what differs from the state last read of it
        here (`state` or `with_items`) is written, and the decision's effects. Once per run."""
        ...

    def create(self, state: RunState, changes: Changes | None) -> None:
        """Record a new run, already in its decided state, and its first decision's effects.

        When its idempotency key is taken, nothing of it is written: `applied` then names
        the run holding the key, and `created` is False.
        """
        ...

    def applied(self, run_id: str) -> Applied:
        """After the commit: the state and outbox rows the write or create on `run_id` left."""
        ...

    def created(self, run_id: str) -> bool:
        """After the commit: whether the create of `run_id` inserted it."""
        ...


class DecisionStore(Protocol):
    """Atomic decisions: lock runs, read them, write state, history, outbox and timers."""

    def deciding(self, run_ids: Collection[str]) -> AbstractAsyncContextManager[DecisionBatch]:
        """One transaction holding `run_ids` locked (those that exist; none to only create).

        Runs are locked in id order, so two transactions never deadlock on each other.
        """
        ...

    async def inflight_attempts(self, limit: int, after: str | None) -> list[InflightAttempt]:
        """Attempts in `scheduled` or `running`, ordered by run id (for recovery)."""
        ...


class OutboxStore(Protocol):
    """The outbox relay's side of the store."""

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that these rows were published."""
        ...

    async def claim_unsent(
        self, older_than: datetime, limit: int, *, leased: bool = False
    ) -> list[OutboxRecord]:
        """Unsent rows created before `older_than` (left by a crash), oldest first; a row
        leased to a worker is left alone until its lease has run out, unless `leased`
        (start-up recovery: no process is left that holds one).

        A row that was leased goes out marked as delivered once already
        (`treadle.messages.delivered_once_more`): its attempt ran in the process that died."""
        ...

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        """Extend the leases of these unsent rows to `seconds` from now."""
        ...

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many rows are unsent, and when the oldest was written."""
        ...

    async def prune_sent(self, sent_before: datetime, batch: int) -> int:
        """Delete the rows marked sent before `sent_before`, `batch` at a time; how many."""
        ...


class TimerStore(Protocol):
    """Durable timers, claimed so that one orchestrator fires each."""

    async def claim_due_timers(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueTimer]:
        """Timers due at `now` and not leased by another orchestrator; leases them."""
        ...

    async def next_timer_at(self) -> datetime | None:
        """When the earliest timer is due (leased ones included)."""
        ...

    async def count_overdue_timers(self, now: datetime, cap: int) -> int:
        """How many timers are due at `now` but not fired yet, counting at most `cap`."""
        ...


class ScheduleStore(Protocol):
    """Schedules, and claiming the due ones so that one orchestrator handles each tick."""

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; raises `ScheduleExists` when its name is taken."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; raises `ScheduleNotFound`."""
        ...

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        """Schedules by name; raises `InvalidCursor`."""
        ...

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime
    ) -> Schedule:
        """Pause or resume; raises `ScheduleNotFound`."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule; raises `ScheduleNotFound`."""
        ...

    async def claim_due_schedules(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[Schedule]:
        """Active schedules due at `now` not leased by another orchestrator; leases them."""
        ...

    async def advance_schedule(
        self,
        schedule_id: str,
        *,
        next_fire_at: datetime,
        fired_at: datetime | None,
        run_id: str | None,
    ) -> None:
        """Record a handled tick and release the lease."""
        ...

    async def update_schedule(self, schedule: Schedule) -> Schedule:
        """Replace what the schedule does (`SCHEDULE_SPEC_FIELDS`) and its next fire time;
        raises `ScheduleNotFound`."""
        ...

    async def record_schedule_run(self, schedule_id: str, fired_at: datetime, run_id: str) -> None:
        """Record a run started outside the ticks (a trigger); raises `ScheduleNotFound`."""
        ...

    async def start_backfill(self, schedule_id: str, backfill: Backfill) -> Schedule:
        """Begin a backfill; raises `ScheduleNotFound`, `BackfillInProgress`."""
        ...

    async def advance_backfill(self, schedule_id: str, backfill: Backfill | None) -> None:
        """Move the backfill's cursor, or end it with None; a schedule without one (stopped,
        or deleted) is left as it is."""
        ...


class DeliveryCounter(Protocol):
    """Counts, durably and before the attempt runs, each delivery of it to a worker."""

    async def count_delivery(
        self, run_id: str, task_id: str, attempt: int, item: int | None
    ) -> int:
        """Count one more delivery of the attempt; how many so far, this one included."""
        ...


class WorkerRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A worker process as it last reported itself (`WorkerRegistry.record_worker`)."""

    id: str
    host: str
    pid: int
    queues: list[str]
    handlers: list[str]
    concurrency: int
    inflight: int
    started_at: datetime
    last_seen: datetime


class WaitingDispatches(msgspec.Struct, frozen=True, kw_only=True):
    """Dispatches written but not started, of one task of one workflow version (a map's
    items count as its task's); the queue is the definition's to tell."""

    workflow: str
    version: int
    task_id: str
    count: int
    oldest: datetime


class WorkerRegistry(Protocol):
    """Worker processes report themselves here; the dashboard reads who is alive."""

    async def record_worker(self, worker: WorkerRecord) -> None:
        """Insert the worker, or replace its row (by id) with this report."""
        ...

    async def list_workers(self) -> list[WorkerRecord]:
        """Every recorded worker, the most recently seen first."""
        ...

    async def prune_workers(self, seen_before: datetime) -> int:
        """Delete the workers last seen before `seen_before`; how many went."""
        ...

    async def waiting_dispatches(self) -> list[WaitingDispatches]:
        """Tasks and map items dispatched but not started (`scheduled` with a
        `scheduled_at`), grouped by workflow version and task, with the oldest wait."""
        ...


class StateStore(
    WorkflowStore,
    RunStore,
    DecisionStore,
    OutboxStore,
    TimerStore,
    ScheduleStore,
    DeliveryCounter,
    WorkerRegistry,
    Protocol,
):
    """Everything the engine keeps in its database; one adapter implements it all."""

    async def migrate(self) -> None:
        """Bring the schema to the newest migration."""
        ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""
        ...

    async def schema_is_current(self) -> bool:
        """Whether the database schema is at the newest migration this code knows."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


# --- transport ------------------------------------------------------------------------


class Delivery(Protocol):
    """One received message; settle it exactly once with `ack` or `nack`."""

    @property
    def message(self) -> Message: ...

    @property
    def delivery_count(self) -> int:
        """1 on first delivery; more when the broker redelivers."""
        ...

    async def ack(self) -> None: ...

    async def nack(self, *, requeue: bool = True) -> None:
        """Give it back (requeue) or send it to the dead channel (requeue False).

        A transport dead-letters by itself after `max_deliveries` deliveries.
        """
        ...


class EagerOutbox(Protocol):
    """The outbox side of eager dispatch: what becomes of a leased row (the relay)."""

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        """Extend the leases of rows whose attempts still run here."""
        ...

    async def mark_done(self, ids: Sequence[int]) -> None:
        """These leased rows' attempts were settled here: mark the rows sent."""
        ...

    async def publish(self, records: Sequence[OutboxRecord]) -> int:
        """Publish these rows after all (the attempt was given back); how many went."""
        ...


class EagerWorker(Protocol):
    """This process's worker, taking dispatches its own decisions write without the
    broker round trip (`worker.eager`)."""

    lease_seconds: float

    def reserve(self, channel: str, message: Message) -> object | None:
        """A slot for this dispatch, or None: not a queue served here, its handler not
        registered here, no slot free, or the worker not running."""
        ...

    def release(self, slot: object) -> None:
        """Give back a slot whose decision did not commit."""
        ...

    def start(self, slot: object, record: OutboxRecord) -> None:
        """Run the committed, leased dispatch `record` in `slot` (without waiting)."""
        ...


class LocalEvents(Protocol):
    """Decides a worker's events in the worker's own process (its orchestrator role's
    consumer), sparing them the events channel's round trip."""

    async def decide_here(self, env: Envelope) -> bool:
        """Apply the event as one off the events channel would be; False when it could not
        be (the caller then publishes it on the events channel)."""
        ...


class Transport(Protocol):
    """Moves messages between roles. Capabilities are class constants tests skip on."""

    name: ClassVar[str]
    DURABLE: ClassVar[bool]
    """Messages survive the process (and broker restarts); False for the in-process one."""
    COUNTS_LOST_DELIVERIES: ClassVar[bool]
    """Whether a delivery held by a consumer that died comes back with its count raised.

    False for Kafka (uncommitted records are read again with their old count): workers
    then count their deliveries in the store (`DeliveryCounter`). The in-process transport
    says True: start-up recovery counts for it (`DispatchTask.delivery`).
    """
    ORDERED_PER_KEY: ClassVar[bool]

    async def connect(self) -> None:
        """Open connections and declare what is needed; raise `TransportUnavailable`."""
        ...

    async def close(self) -> None:
        """Stop consuming, finish in-flight acks, close connections."""
        ...

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        """Publish a batch durably (confirmed by the broker) before returning."""
        ...

    def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        """Consume `channel` as a member of consumer group `group`.

        A broadcast channel (`treadle.messages.is_broadcast`) has no groups: every subscription
        gets its own copy of every message published while it is open (live on entry), and
        once it closes it leaves no queue, consumer or group behind on the broker.
        """
        ...


# --- the engine's control surface (api -> orchestrator logic) ---------------------------


class RunControl(Protocol):
    """Starting and steering runs (retry, pause, resume too); what the API and CLI call."""

    async def start_run(
        self,
        workflow: str,
        version: int | None,
        input: Any,
        idempotency_key: str | None = None,
        traceparent: str | None = None,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> tuple[RunState, bool]:
        """Start a run (or return the one started with this key); (run, created).

        `tags` go over the definition's default tags; raises `TagsInvalid`."""
        ...

    async def cancel_run(self, run_id: str, reason: str = "") -> RunState:
        """Request cancellation; raises `RunNotFound`, `RunNotActive`."""
        ...

    async def signal_run(self, run_id: str, name: str, payload: Any) -> RunState:
        """Deliver a signal; raises `RunNotFound`, `RunNotActive`."""
        ...

    async def register_workflow(self, definition: dict[str, Any]) -> tuple[StoredWorkflow, bool]:
        """Validate and store a definition; raises `DefinitionInvalid`."""
        ...

    async def retry_run(self, run_id: str) -> RunState:
        """Resume a failed or timed-out run from its failed tasks; raises `RunNotActive`."""
        ...

    async def pause_run(self, run_id: str) -> RunState:
        """Start nothing new until resumed; raises `RunNotFound`, `RunNotActive`."""
        ...

    async def resume_run(self, run_id: str) -> RunState:
        """Start what became ready while paused; raises `RunNotFound`, `RunNotActive`."""
        ...


class RunEnds(Protocol):
    """Tells a waiter when a run ends, for ends decided in this process."""

    def watching(self, run_id: str) -> AbstractContextManager[anyio.Event]:
        """An event set when the run ends; enter it before reading the run."""
        ...


class ScheduleControl(Protocol):
    """Creating and steering schedules; what the API calls."""

    async def create_schedule(self, data: Any) -> Schedule:
        """Validate and store a schedule; raises `ScheduleInvalid`, `ScheduleExists`."""
        ...

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; raises `ScheduleNotFound`."""
        ...

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        """Schedules by name; raises `InvalidCursor`."""
        ...

    async def pause_schedule(self, schedule_id: str) -> Schedule:
        """Stop firing; raises `ScheduleNotFound`."""
        ...

    async def resume_schedule(self, schedule_id: str) -> Schedule:
        """Fire again from the next future tick; raises `ScheduleNotFound`."""
        ...

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete it (its runs stay); raises `ScheduleNotFound`."""
        ...

    async def trigger_schedule(self, schedule_id: str) -> RunState:
        """Start one run now, recorded as its last run; the next tick stays where it was."""
        ...

    async def update_schedule(self, schedule_id: str, patch: Any) -> Schedule:
        """Change a schedule in place; raises `ScheduleNotFound`, `ScheduleInvalid`."""
        ...

    async def backfill_schedule(self, schedule_id: str, data: Any) -> Schedule:
        """Start a run per tick of a past range; raises `ScheduleInvalid`, `BackfillInProgress`."""
        ...

    async def cancel_backfill(self, schedule_id: str) -> Schedule:
        """Stop the backfill in progress (its runs stay); raises `ScheduleNotFound`."""
        ...


class ApiKeyStore(Protocol):
    """API keys at rest (only digests of their secrets); used by the API and the CLI."""

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new key."""
        ...

    async def get_api_key(self, key_id: str) -> ApiKey:
        """The key, revoked or not; raises `ApiKeyNotFound`."""
        ...

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey:
        """Revoke the key (again is a no-op); raises `ApiKeyNotFound`."""
        ...

    async def count_active_api_keys(self) -> int:
        """How many keys are not revoked."""
        ...

    async def count_api_keys(self) -> int:
        """How many keys were ever created, revoked ones too."""
        ...

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        """Record when each key was last used (a batch, written now and then)."""
        ...


class Clock(Protocol):
    """The time, injectable so tests can jump it."""

    def now(self) -> datetime: ...


class HealthCheck(Protocol):
    """One readiness check (database, broker, a role's loop)."""

    name: str

    async def check(self) -> None:
        """Raise with a reason if not ready."""
        ...
