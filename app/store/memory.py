"""The `StateStore` (and `ApiKeyStore`) in process memory: for tests and embedding.

Nothing survives the process: `database.url = "memory://"` gives an engine that forgets
every run when it stops, so it is for tests, demos and embedding, never for production.
The contract suite (`tests/integration/store/`) runs over it beside SQLite, PostgreSQL
and MySQL, so its answers are the SQL adapter's: the same errors, orders, cursors,
idempotency-key conflicts, outbox ids, timer and schedule leases.

Each method reads and writes its dicts without an await in between, so on one event loop
it is a transaction by construction. A decision transaction (`deciding`) holds a lock the
others wait on, and checks its writes whole before it makes any, so one that raises (or
fails a check) has written nothing. Every method first yields to the loop once, as a
database round trip would, so concurrent callers interleave between calls as they do over
a real database. Stored run
states are copies made through msgspec's JSON, so what a caller reads back is shaped as the
SQL adapter returns it (tuples become lists) and shares nothing with what it wrote.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import msgspec

from treadle.domain.api_keys import ApiKey, ApiKeyNotFound
from treadle.domain.errors import RunNotFound, TaskNotFound, WorkflowNotFound
from treadle.domain.events import HistoryEntry
from treadle.domain.schedules import (
    SCHEDULE_SPEC_FIELDS,
    Backfill,
    BackfillInProgress,
    Schedule,
    ScheduleExists,
    ScheduleNotFound,
)
from treadle.domain.state import ItemQuery, MapItem, RunState, RunStatus, TaskState, TaskStatus
from treadle.messages import delivered_once_more
from treadle.ports import (
    Applied,
    Changes,
    DueTimer,
    InflightAttempt,
    MapItemRecord,
    OmittedValue,
    OutboxRecord,
    Page,
    RunCounts,
    RunFilter,
    RunSummary,
    StoredWorkflow,
    WaitingDispatches,
    WorkerRecord,
)
from treadle.store._book import DecisionBook
from treadle.store._errors import StoreError
from treadle.store._rows import Int32, Int64, RunsCursor, decode_cursor, encode_cursor, item_record

T = TypeVar("T")
_ACTIVE = (TaskStatus.SCHEDULED, TaskStatus.RUNNING)
_UNFINISHED = (TaskStatus.PENDING, TaskStatus.SCHEDULED, TaskStatus.RUNNING)

TimerKey = tuple[str, str, str | None, int, int | None]
"""(run, kind, task, attempt, item): a timer's identity, as the SQL table's key."""
ItemKey = tuple[str, int]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Timer:
    timer: DueTimer
    leased_until: datetime | None = None


@dataclass
class _OutboxRow:
    record: OutboxRecord
    created_at: datetime
    sent_at: datetime | None = None
    leased_until: datetime | None = None


def _claimed(row: _OutboxRow) -> OutboxRecord:
    """A row's record as claimed to publish: nobody's eager dispatch any more, and marked as
    delivered once already if it was one (its attempt ran in the process that died)."""
    record = row.record
    if row.leased_until is None:
        return record
    message = delivered_once_more(record.message)
    return msgspec.structs.replace(record, leased=False, message=message)


@dataclass
class _Schedule:
    schedule: Schedule
    leased_until: datetime | None = None


@dataclass
class MemoryData:
    """Everything a `MemoryStore` holds; two stores sharing one act as two processes
    on one database."""

    workflows: dict[str, list[StoredWorkflow]] = field(default_factory=dict)
    runs: dict[str, RunState] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    items: dict[str, dict[str, dict[int, MapItem]]] = field(default_factory=dict)
    history: dict[str, list[tuple[int, HistoryEntry]]] = field(default_factory=dict)
    outbox: dict[int, _OutboxRow] = field(default_factory=dict)
    timers: dict[TimerKey, _Timer] = field(default_factory=dict)
    schedules: dict[str, _Schedule] = field(default_factory=dict)
    api_keys: dict[str, ApiKey] = field(default_factory=dict)
    deliveries: dict[tuple[str, str, int, int | None], int] = field(default_factory=dict)
    workers: dict[str, WorkerRecord] = field(default_factory=dict)
    last_history_id: int = 0
    last_outbox_id: int = 0
    decisions: anyio.Lock | None = None
    """Held by each decision transaction: they take turns, as SQLite's writer does (made
    on first use, inside the event loop that uses it)."""


class MemoryStore:
    """The whole `StateStore` port and the `ApiKeyStore` over plain dicts."""

    def __init__(
        self, *, clock: Callable[[], datetime] = _utc_now, data: MemoryData | None = None
    ) -> None:
        self.data = data if data is not None else MemoryData()
        self._now = clock

    # --- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        """Nothing to migrate: the schema is the code."""
        await anyio.lowlevel.checkpoint()

    async def ping(self) -> None:
        """Always reachable."""
        await anyio.lowlevel.checkpoint()

    async def schema_is_current(self) -> bool:
        """Always current."""
        await anyio.lowlevel.checkpoint()
        return True

    async def close(self) -> None:
        """Nothing to release (the data stays until the store is dropped)."""
        await anyio.lowlevel.checkpoint()

    # --- workflows ---------------------------------------------------------------------

    async def save_workflow(
        self, name: str, definition: dict[str, Any], digest: str
    ) -> tuple[StoredWorkflow, bool]:
        """Store version latest+1 unless the latest has this digest; (workflow, created)."""
        await anyio.lowlevel.checkpoint()
        versions = self.data.workflows.setdefault(name, [])
        if versions and versions[-1].digest == digest:
            return versions[-1], False
        stored = StoredWorkflow(
            name=name,
            version=len(versions) + 1,
            definition=_copy(definition, dict[str, Any]),
            digest=digest,
            created_at=self._now(),
        )
        versions.append(stored)
        return stored, True

    async def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        """The given version, or the latest; raises `WorkflowNotFound`."""
        await anyio.lowlevel.checkpoint()
        versions = self.data.workflows.get(name, [])
        if version is None and versions:
            return versions[-1]
        if version is not None and 1 <= version <= len(versions):
            return versions[version - 1]
        raise WorkflowNotFound(name, version)

    async def list_workflows(self, limit: int, cursor: str | None) -> Page[StoredWorkflow]:
        """The latest version of each workflow, by name."""
        await anyio.lowlevel.checkpoint()
        latest = [self.data.workflows[n][-1] for n in sorted(self.data.workflows)]
        if cursor is not None:
            (after,) = decode_cursor(cursor, "workflows", tuple[str])
            latest = [w for w in latest if w.name > after]
        return _page(latest, limit, lambda w: ("workflows", w.name))

    async def list_versions(
        self, name: str, limit: int, cursor: str | None
    ) -> Page[StoredWorkflow]:
        """Every version of one workflow, newest first; raises `WorkflowNotFound`."""
        await anyio.lowlevel.checkpoint()
        if name not in self.data.workflows:
            raise WorkflowNotFound(name)
        versions = list(reversed(self.data.workflows[name]))
        if cursor is not None:
            (before,) = decode_cursor(cursor, "versions", tuple[Int32])
            versions = [w for w in versions if w.version < before]
        return _page(versions, limit, lambda w: ("versions", w.version))

    # --- runs --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunState:
        """The run with all its tasks; raises `RunNotFound`."""
        await anyio.lowlevel.checkpoint()
        return self._run(run_id)

    async def record_worker(self, worker: WorkerRecord) -> None:
        """Insert the worker, or replace its row (by id) with this report (but its start)."""
        await anyio.lowlevel.checkpoint()
        before = self.data.workers.get(worker.id)
        started = before.started_at if before else worker.started_at
        self.data.workers[worker.id] = msgspec.structs.replace(worker, started_at=started)

    async def list_workers(self) -> list[WorkerRecord]:
        """Every recorded worker, the most recently seen first."""
        await anyio.lowlevel.checkpoint()
        by_id = sorted(self.data.workers.values(), key=lambda w: w.id)
        return sorted(by_id, key=lambda w: w.last_seen, reverse=True)

    async def prune_workers(self, seen_before: datetime) -> int:
        """Delete the workers last seen before `seen_before`; how many went."""
        await anyio.lowlevel.checkpoint()
        gone = [k for k, w in self.data.workers.items() if w.last_seen < seen_before]
        for key in gone:
            del self.data.workers[key]
        return len(gone)

    async def waiting_dispatches(self) -> list[WaitingDispatches]:
        """Tasks and map items dispatched but not started, by workflow version and task."""
        await anyio.lowlevel.checkpoint()
        groups: dict[tuple[str, int, str], list[datetime]] = {}
        for run in self.data.runs.values():
            waiting: list[TaskState | MapItem] = [
                *run.tasks.values(),
                *(i for items in self.data.items.get(run.id, {}).values() for i in items.values()),
            ]
            for w in waiting:
                if w.status == TaskStatus.SCHEDULED and w.scheduled_at is not None:
                    key = (run.workflow, run.version, w.task_id)
                    groups.setdefault(key, []).append(w.scheduled_at)
        return [
            WaitingDispatches(workflow=wf, version=v, task_id=t, count=len(at), oldest=min(at))
            for (wf, v, t), at in groups.items()
        ]

    async def count_delivery(
        self, run_id: str, task_id: str, attempt: int, item: int | None
    ) -> int:
        """Count one more delivery of the attempt; how many so far, this one included."""
        await anyio.lowlevel.checkpoint()
        key = (run_id, task_id, attempt, item)
        self.data.deliveries[key] = self.data.deliveries.get(key, 0) + 1
        return self.data.deliveries[key]

    async def get_run_bounded(self, run_id: str, most_bytes: int) -> RunState:
        """The run with its tasks, each input and output over `most_bytes` as JSON an
        `OmittedValue`; raises `RunNotFound`."""
        await anyio.lowlevel.checkpoint()
        run = _bounded(self._run(run_id), most_bytes)
        tasks = {task_id: _bounded(t, most_bytes) for task_id, t in run.tasks.items()}
        return msgspec.structs.replace(run, tasks=tasks)

    async def get_value(
        self, run_id: str, task_id: str | None, item: int | None, field: str
    ) -> str | None:
        """The JSON of one input, output or error, None for null; raises `RunNotFound`,
        `TaskNotFound`."""
        await anyio.lowlevel.checkpoint()
        holder = self._value_holder(run_id, task_id, item)
        value = getattr(holder, field)
        return None if value is None else msgspec.json.encode(value).decode()

    def _value_holder(
        self, run_id: str, task_id: str | None, item: int | None
    ) -> RunState | TaskState | MapItem:
        run = self._run(run_id)
        if task_id is None:
            return run
        if item is None:
            task = run.tasks.get(task_id)
            if task is None:
                raise TaskNotFound(run_id, task_id)
            return task
        found = self.data.items.get(run_id, {}).get(task_id, {}).get(item)
        if found is None:
            raise TaskNotFound(run_id, f"{task_id}[{item}]", "map item")
        return found

    async def list_runs(
        self, where: RunFilter, *, limit: int, cursor: str | None
    ) -> Page[RunSummary]:
        """Runs newest first (by creation time, then id); raises `InvalidCursor`."""
        await anyio.lowlevel.checkpoint()
        found = [r for r in self.data.runs.values() if run_matches(r, where)]
        if cursor is not None:
            position = decode_cursor(cursor, "runs", RunsCursor)
            found = [r for r in found if (r.created_at, r.id) < position]
        found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
        summaries = [_summary(r) for r in found[: limit + 1]]
        return _page(summaries, limit, lambda r: ("runs", r.created_at, r.id))

    async def count_runs(
        self, *, workflow: str | None, created_after: datetime | None, cap: int
    ) -> RunCounts:
        """How many runs have each status, each at most `cap`."""
        await anyio.lowlevel.checkpoint()
        raw = dict.fromkeys((s.value for s in RunStatus), 0)
        where = RunFilter(workflow=workflow, created_after=created_after)
        for run in (r for r in self.data.runs.values() if run_matches(r, where)):
            raw[run.status.value] += 1
        return RunCounts(
            counts={k: min(n, cap) for k, n in raw.items()},
            capped=any(n > cap for n in raw.values()),
            cap=cap,
        )

    async def list_history(self, run_id: str, limit: int, cursor: str | None) -> Page[HistoryEntry]:
        """A run's history, oldest first; raises `RunNotFound`, `InvalidCursor`."""
        await anyio.lowlevel.checkpoint()
        after = -1
        if cursor is not None:
            (after,) = decode_cursor(cursor, "history", tuple[Int64])
        self._run(run_id)
        rows = [(i, h) for i, h in self.data.history.get(run_id, []) if i > after]
        page = _page(rows, limit, lambda row: ("history", row[0]))
        return Page(items=[h for _, h in page.items], next_cursor=page.next_cursor)

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
        """A map task's items by index from `from_index` (only those in `status` when
        given), each input and output over `most_bytes` as JSON an `OmittedValue`; raises
        `RunNotFound`, `TaskNotFound`, `InvalidCursor`."""
        await anyio.lowlevel.checkpoint()
        after = -1
        if cursor is not None:
            (after,) = decode_cursor(cursor, "items", tuple[Int32])
        run = self._run(run_id)
        task = run.tasks.get(task_id)
        if task is None or task.type != "map":
            raise TaskNotFound(run_id, task_id, "map task")
        items = self.data.items.get(run_id, {}).get(task_id, {})
        start = max(after + 1, from_index or 0)
        kept = [
            items[i]
            for i in sorted(items)
            if i >= start and (status is None or items[i].status == status)
        ]
        if most_bytes is not None:
            kept = [_bounded(i, most_bytes) for i in kept]
        found = [item_record(i) for i in kept]
        return _page(found, limit, lambda i: ("items", i.index))

    async def inflight_attempts(self, limit: int, after: str | None) -> list[InflightAttempt]:
        """Attempts in `scheduled` or `running`, ordered by run id, never splitting a run."""
        await anyio.lowlevel.checkpoint()
        found: list[tuple[str, str, int, str]] = sorted(
            (run.id, t.task_id, t.attempt, t.type)
            for run in self.data.runs.values()
            if after is None or run.id > after
            for t in run.tasks.values()
            if t.status in _ACTIVE
        )
        if len(found) > limit:
            last_run = found[limit - 1][0] if limit > 0 else None
            found = found[:limit] + [a for a in found[limit:] if a[0] == last_run]
        attempts = [InflightAttempt(run_id=r, task_id=t, attempt=n) for r, t, n, _ in found]
        for run_id in sorted({r for r, _, _, kind in found if kind == "map"}):
            attempts += self._inflight_items(run_id)
        return sorted(attempts, key=_attempt_order)

    def _inflight_items(self, run_id: str) -> list[InflightAttempt]:
        """The dispatched map items of a run (one waiting out a backoff has no dispatch)."""
        return [
            InflightAttempt(run_id=run_id, task_id=task_id, attempt=item.attempt, item=index)
            for task_id, items in sorted(self.data.items.get(run_id, {}).items())
            for index, item in sorted(items.items())
            if item.status in _ACTIVE and item.scheduled_at is not None
        ]

    # --- decisions ---------------------------------------------------------------------

    @asynccontextmanager
    async def deciding(self, run_ids: Collection[str]) -> AsyncIterator[MemoryDecisionBatch]:
        """One decision transaction: the store's decisions take turns (as SQLite's writer
        does), and a batch's writes are checked whole before any is made, so one that
        fails a check (or an exception in the block) leaves nothing written."""
        await anyio.lowlevel.checkpoint()
        if self.data.decisions is None:
            self.data.decisions = anyio.Lock()
        async with self.data.decisions:
            batch = MemoryDecisionBatch(self, sorted(set(run_ids)))
            yield batch
            batch.commit()

    def _check_effects(
        self, operation: str, changes: Changes, creating: Collection[str] = ()
    ) -> None:
        """Refuse what the SQL adapter's foreign keys refuse: a timer of an unknown run."""
        for start in changes.start_timers:
            if start.run_id not in creating and start.run_id not in self.data.runs:
                raise StoreError(operation, f"a timer names unknown run {start.run_id!r}")

    def _check_new_items(
        self, run_id: str, loaded: Mapping[ItemKey, MapItem], decided: Iterable[MapItem]
    ) -> None:
        """Refuse an item the decision treats as new that exists (a duplicate key in SQL)."""
        stored = self.data.items.get(run_id, {})
        for item in decided:
            key = (item.task_id, item.index)
            if key not in loaded and item.index in stored.get(item.task_id, {}):
                raise StoreError("apply", f"map item {key} of run {run_id!r} already exists")

    def _load_items(self, run_id: str, query: ItemQuery) -> dict[ItemKey, MapItem]:
        """The items `query` names, each once, by task and index."""
        stored = self.data.items.get(run_id, {})
        found: dict[ItemKey, MapItem] = {}
        for task_id in query.whole:
            found.update(((task_id, i), item) for i, item in stored.get(task_id, {}).items())
        for task_id, index in query.keys:
            item = stored.get(task_id, {}).get(index)
            if item is not None:
                found[(task_id, index)] = item
        for task_id, start, count in query.pending:
            if task_id in query.whole or count < 1:
                continue
            task_items = stored.get(task_id, {})
            pending = [
                i
                for i in sorted(task_items)
                if i >= start and task_items[i].status is TaskStatus.PENDING
            ]
            found.update(((task_id, i), task_items[i]) for i in pending[:count])
        return dict(sorted(found.items()))

    def _write_items(
        self, run_id: str, loaded: Mapping[ItemKey, MapItem], decided: Iterable[MapItem]
    ) -> None:
        stored = self.data.items.setdefault(run_id, {})
        for item in decided:
            if loaded.get((item.task_id, item.index)) != item:
                stored.setdefault(item.task_id, {})[item.index] = _copy(item, MapItem)

    def _write_effects(self, changes: Changes) -> list[OutboxRecord]:
        """History, outbox, item cancels and timers, in the SQL adapter's order."""
        run_id, now = changes.state.id, self._now()
        for entry in changes.history:
            self.data.last_history_id += 1
            self.data.history[run_id].append((self.data.last_history_id, _copy(entry)))
        records = []
        for outgoing in changes.outbox:
            self.data.last_outbox_id += 1
            lease = outgoing.lease_seconds
            record = OutboxRecord(
                id=self.data.last_outbox_id,
                channel=outgoing.channel,
                message=outgoing.message,
                leased=lease is not None,
            )
            leased_until = None if lease is None else now + timedelta(seconds=lease)
            self.data.outbox[record.id] = _OutboxRow(
                record=record, created_at=now, leased_until=leased_until
            )
            records.append(record)
        for task_id in dict.fromkeys(changes.cancel_items):
            self._cancel_items(run_id, task_id, now)
        for cancel in changes.cancel_timers:
            self.data.timers.pop(_timer_key(cancel), None)
        for start in changes.start_timers:
            due = DueTimer(
                run_id=start.run_id,
                kind=start.kind,
                task_id=start.task_id,
                attempt=start.attempt,
                fire_at=start.fire_at,
                item=start.item,
                traceparent=changes.traceparent,
            )
            self.data.timers[_timer_key(start)] = _Timer(timer=due)
        return records

    def _cancel_items(self, run_id: str, task_id: str, now: datetime) -> None:
        items = self.data.items.get(run_id, {}).get(task_id, {})
        for index, item in items.items():
            if item.status in _UNFINISHED:
                items[index] = msgspec.structs.replace(
                    item, status=TaskStatus.CANCELLED, finished_at=now
                )

    # --- outbox ------------------------------------------------------------------------

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that these rows were published."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        for row_id in ids:
            row = self.data.outbox.get(row_id)
            if row is not None:
                row.sent_at = now

    async def claim_unsent(
        self, older_than: datetime, limit: int, *, leased: bool = False
    ) -> list[OutboxRecord]:
        """Unsent rows created before `older_than` (left by a crash), oldest first."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        unsent = [r for r in self.data.outbox.values() if r.sent_at is None]
        free = [r for r in unsent if leased or r.leased_until is None or r.leased_until < now]
        stale = sorted(
            (r for r in free if r.created_at < older_than),
            key=lambda r: (r.created_at, r.record.id),
        )
        return [_claimed(r) for r in stale[:limit]]

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        """Extend the leases of these unsent rows to `seconds` from now."""
        await anyio.lowlevel.checkpoint()
        until = self._now() + timedelta(seconds=seconds)
        for row_id in ids:
            row = self.data.outbox.get(row_id)
            if row is not None and row.sent_at is None:
                row.leased_until = until

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many rows are unsent, and when the oldest was written."""
        await anyio.lowlevel.checkpoint()
        unsent = [r.created_at for r in self.data.outbox.values() if r.sent_at is None]
        return len(unsent), min(unsent, default=None)

    async def prune_sent(self, sent_before: datetime, batch: int) -> int:
        """Delete the rows marked sent before `sent_before`; how many."""
        await anyio.lowlevel.checkpoint()
        doomed = [
            i
            for i, r in self.data.outbox.items()
            if r.sent_at is not None and r.sent_at < sent_before
        ]
        for row_id in doomed:
            del self.data.outbox[row_id]
        return len(doomed)

    # --- timers ------------------------------------------------------------------------

    async def claim_due_timers(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueTimer]:
        """Timers due at `now` and not leased by another orchestrator; leases them."""
        await anyio.lowlevel.checkpoint()
        due = sorted(
            (
                (t.timer.fire_at, key)
                for key, t in self.data.timers.items()
                if t.timer.fire_at <= now and (t.leased_until is None or t.leased_until < now)
            ),
            key=lambda pair: (pair[0], _sortable(pair[1])),
        )
        until = now + timedelta(seconds=lease_seconds)
        claimed = []
        for _, key in due[:limit]:
            self.data.timers[key].leased_until = until
            claimed.append(self.data.timers[key].timer)
        return claimed

    async def next_timer_at(self) -> datetime | None:
        """When the earliest timer is due (leased ones included)."""
        await anyio.lowlevel.checkpoint()
        return min((t.timer.fire_at for t in self.data.timers.values()), default=None)

    async def list_timers(self, run_id: str) -> list[DueTimer]:
        """The run's timers not fired yet (leased ones too), earliest first."""
        await anyio.lowlevel.checkpoint()
        mine = [(t.timer.fire_at, key) for key, t in self.data.timers.items() if key[0] == run_id]
        mine.sort(key=lambda pair: (pair[0], _sortable(pair[1])))
        return [self.data.timers[key].timer for _, key in mine]

    async def count_overdue_timers(self, now: datetime, cap: int) -> int:
        """How many timers are due at `now` but not fired yet, counting at most `cap`."""
        await anyio.lowlevel.checkpoint()
        return min(cap, sum(1 for t in self.data.timers.values() if t.timer.fire_at <= now))

    # --- schedules ---------------------------------------------------------------------

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; raises `ScheduleExists` when its name (or id) is taken."""
        await anyio.lowlevel.checkpoint()
        taken = any(s.schedule.name == schedule.name for s in self.data.schedules.values())
        if taken or schedule.id in self.data.schedules:
            raise ScheduleExists(schedule.name)
        self.data.schedules[schedule.id] = _Schedule(schedule=_copy(schedule))
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; raises `ScheduleNotFound`."""
        await anyio.lowlevel.checkpoint()
        return self._schedule(schedule_id).schedule

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        """Schedules by name; raises `InvalidCursor`."""
        await anyio.lowlevel.checkpoint()
        found = sorted((s.schedule for s in self.data.schedules.values()), key=lambda s: s.name)
        if cursor is not None:
            (after,) = decode_cursor(cursor, "schedules", tuple[str])
            found = [s for s in found if s.name > after]
        return _page(found, limit, lambda s: ("schedules", s.name))

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime
    ) -> Schedule:
        """Pause or resume; a resumed schedule fires next at `next_fire_at`."""
        await anyio.lowlevel.checkpoint()
        row = self._schedule(schedule_id)
        row.schedule = msgspec.structs.replace(
            row.schedule, paused=paused, next_fire_at=next_fire_at
        )
        row.leased_until = None
        return row.schedule

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule (its runs stay); raises `ScheduleNotFound`."""
        await anyio.lowlevel.checkpoint()
        self._schedule(schedule_id)
        del self.data.schedules[schedule_id]

    async def claim_due_schedules(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[Schedule]:
        """Active schedules due at `now` (or backfilling) that no one else holds; leases them."""
        await anyio.lowlevel.checkpoint()
        due = sorted(
            (
                row
                for row in self.data.schedules.values()
                if not row.schedule.paused
                and (row.schedule.next_fire_at <= now or row.schedule.backfill is not None)
                and (row.leased_until is None or row.leased_until < now)
            ),
            key=lambda row: (row.schedule.next_fire_at, row.schedule.id),
        )[:limit]
        for row in due:
            row.leased_until = now + timedelta(seconds=lease_seconds)
        return [row.schedule for row in due]

    async def advance_schedule(
        self,
        schedule_id: str,
        *,
        next_fire_at: datetime,
        fired_at: datetime | None,
        run_id: str | None,
    ) -> None:
        """Record a handled tick and release the lease (a deleted schedule is ignored)."""
        await anyio.lowlevel.checkpoint()
        row = self.data.schedules.get(schedule_id)
        if row is None:
            return
        changed: dict[str, Any] = {"next_fire_at": next_fire_at}
        if fired_at is not None:
            changed["last_fire_at"] = fired_at
        if run_id is not None:
            changed["last_run_id"] = run_id
        row.schedule = msgspec.structs.replace(row.schedule, **changed)
        row.leased_until = None

    async def update_schedule(self, schedule: Schedule) -> Schedule:
        """Replace what the schedule does and its next fire time; raises `ScheduleNotFound`."""
        await anyio.lowlevel.checkpoint()
        row = self._schedule(schedule.id)
        row.schedule = msgspec.structs.replace(
            row.schedule,
            **{f: getattr(schedule, f) for f in SCHEDULE_SPEC_FIELDS},
        )
        return row.schedule

    async def record_schedule_run(self, schedule_id: str, fired_at: datetime, run_id: str) -> None:
        """Record a run started outside the ticks (a trigger); raises `ScheduleNotFound`."""
        await anyio.lowlevel.checkpoint()
        row = self._schedule(schedule_id)
        row.schedule = msgspec.structs.replace(
            row.schedule, last_fire_at=fired_at, last_run_id=run_id
        )

    async def start_backfill(self, schedule_id: str, backfill: Backfill) -> Schedule:
        """Begin a backfill; raises `ScheduleNotFound`, `BackfillInProgress`."""
        await anyio.lowlevel.checkpoint()
        row = self._schedule(schedule_id)
        if row.schedule.backfill is not None:
            raise BackfillInProgress(schedule_id)
        row.schedule = msgspec.structs.replace(row.schedule, backfill=backfill)
        return row.schedule

    async def advance_backfill(self, schedule_id: str, backfill: Backfill | None) -> None:
        """Move the backfill's cursor, or end it with None; a schedule without one (stopped,
        or deleted) is left as it is."""
        await anyio.lowlevel.checkpoint()
        row = self.data.schedules.get(schedule_id)
        if row is not None and row.schedule.backfill is not None:
            row.schedule = msgspec.structs.replace(row.schedule, backfill=backfill)

    # --- api keys ----------------------------------------------------------------------

    async def create_api_key(self, key: ApiKey) -> None:
        """Store a new key; raises `StoreError` when its id is taken."""
        await anyio.lowlevel.checkpoint()
        if key.id in self.data.api_keys:
            raise StoreError("create_api_key", f"an API key with id {key.id!r} already exists")
        self.data.api_keys[key.id] = key

    async def get_api_key(self, key_id: str) -> ApiKey:
        """The key, revoked or not; raises `ApiKeyNotFound`."""
        await anyio.lowlevel.checkpoint()
        try:
            return self.data.api_keys[key_id]
        except KeyError:
            raise ApiKeyNotFound(key_id) from None

    async def list_api_keys(self) -> list[ApiKey]:
        """Every key, revoked ones too, oldest first."""
        await anyio.lowlevel.checkpoint()
        return sorted(self.data.api_keys.values(), key=lambda k: (k.created_at, k.id))

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey:
        """Revoke the key; revoking again keeps the first time. Raises `ApiKeyNotFound`."""
        key = await self.get_api_key(key_id)
        if key.revoked_at is None:
            key = self.data.api_keys[key_id] = msgspec.structs.replace(key, revoked_at=at)
        return key

    async def count_active_api_keys(self) -> int:
        """How many keys are not revoked."""
        await anyio.lowlevel.checkpoint()
        return sum(1 for k in self.data.api_keys.values() if k.revoked_at is None)

    async def count_api_keys(self) -> int:
        """How many keys were ever created, revoked ones too."""
        await anyio.lowlevel.checkpoint()
        return len(self.data.api_keys)

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        """Record when each key was last used (unknown ids are ignored)."""
        await anyio.lowlevel.checkpoint()
        for key_id, at in used.items():
            key = self.data.api_keys.get(key_id)
            if key is not None:
                self.data.api_keys[key_id] = msgspec.structs.replace(key, last_used_at=at)

    # --- helpers -----------------------------------------------------------------------

    def _run(self, run_id: str) -> RunState:
        try:
            return self.data.runs[run_id]
        except KeyError:
            raise RunNotFound(run_id) from None

    def _schedule(self, schedule_id: str) -> _Schedule:
        try:
            return self.data.schedules[schedule_id]
        except KeyError:
            raise ScheduleNotFound(schedule_id) from None


class MemoryDecisionBatch(DecisionBook):
    """The `DecisionBatch` of a `MemoryStore`: reads the locked runs, commits on `commit`."""

    def __init__(self, store: MemoryStore, run_ids: Sequence[str]) -> None:
        super().__init__({r: store.data.runs[r] for r in run_ids if r in store.data.runs})
        self._store = store
        self._data = store.data

    async def with_items(self, run_id: str, query: ItemQuery) -> RunState:
        """The locked run with the map items `query` names; raises `RunNotFound`."""
        await anyio.lowlevel.checkpoint()
        state = self.state(run_id)
        loaded = self._store._load_items(run_id, query)
        if loaded:
            state = msgspec.structs.replace(state, map_items=list(loaded.values()))
        return self._read_items(state)

    def _loaded_items(self, run_id: str) -> dict[ItemKey, MapItem]:
        return {(i.task_id, i.index): i for i in self._read[run_id].map_items}

    def commit(self) -> None:
        """Check every write, then make them all (no await in between: atomic)."""
        inserting = self._check_creates()
        for run_id, changes in self._decided.items():
            self._store._check_effects("apply", changes, creating=inserting)
            loaded = self._loaded_items(run_id)
            self._store._check_new_items(run_id, loaded, changes.state.map_items)
        for run_id in inserting:
            self._insert(*self._creates[run_id])
        for run_id, changes in self._decided.items():
            self._data.runs[run_id] = _stored(changes.state)
            self._store._write_items(run_id, self._loaded_items(run_id), changes.state.map_items)
            outbox = self._store._write_effects(changes)
            self._applied[run_id] = Applied(state=changes.state, outbox=outbox)

    def _check_creates(self) -> set[str]:
        """The creates to insert (those whose key is free); raises for a taken run id."""
        inserting: set[str] = set()
        keys: dict[str, str] = {}
        for run_id, (state, _) in self._creates.items():
            key = state.idempotency_key
            holder = self._data.keys.get(key) if key is not None else None
            if key is not None and (holder is not None or key in keys):
                existing = self._data.runs[holder] if holder else self._creates[keys[key]][0]
                self._applied[run_id] = Applied(state=existing, outbox=[])
                continue
            if run_id in self._data.runs:
                raise StoreError("create_run", f"a run with id {run_id!r} already exists")
            if key is not None:
                keys[key] = run_id
            inserting.add(run_id)
        for run_id in inserting:
            state, changes = self._creates[run_id]
            effects = changes if changes is not None else Changes(state=state)
            self._store._check_effects("create_run", effects, creating=inserting)
        return inserting

    def _insert(self, state: RunState, changes: Changes | None) -> None:
        self._data.runs[state.id] = _stored(state)
        self._data.history[state.id] = []
        if state.idempotency_key is not None:
            self._data.keys[state.idempotency_key] = state.id
        self._store._write_items(state.id, {}, state.map_items)
        effects = changes if changes is not None else Changes(state=state)
        outbox = self._store._write_effects(effects)
        self._applied[state.id] = Applied(state=state, outbox=outbox)
        self._inserted.add(state.id)


def _copy(value: T, type_: Any = None) -> T:
    """A deep copy as the SQL adapter would read it back (JSON-shaped values)."""
    copied: T = msgspec.json.decode(msgspec.json.encode(value), type=type_ or type(value))
    return copied


def _stored(state: RunState) -> RunState:
    """The run as kept: its tasks, never its map items (those are kept apart)."""
    return _copy(msgspec.structs.replace(state, map_items=[]))


def _timer_key(timer: Any) -> TimerKey:
    return (timer.run_id, timer.kind.value, timer.task_id, timer.attempt, timer.item)


def _sortable(key: TimerKey) -> tuple[str, str, str, int, int]:
    run_id, kind, task_id, attempt, item = key
    return (run_id, kind, task_id or "", attempt, -1 if item is None else item)


def _attempt_order(attempt: InflightAttempt) -> tuple[str, str, int]:
    """By run (recovery pages by run id), then task, a map task before its items."""
    return (attempt.run_id, attempt.task_id, -1 if attempt.item is None else attempt.item)


def _summary(run: RunState) -> RunSummary:
    return RunSummary(
        id=run.id,
        workflow=run.workflow,
        version=run.version,
        status=run.status.value,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        idempotency_key=run.idempotency_key,
        paused=run.paused,
        tags=run.tags,
    )


def run_matches(run: RunState, where: RunFilter) -> bool:
    """Whether `where` keeps `run` (the in-memory twin of `_run_filter.run_clauses`)."""
    return (
        (where.workflow is None or run.workflow == where.workflow)
        and (where.status is None or run.status.value == where.status)
        and (where.idempotency_key is None or run.idempotency_key == where.idempotency_key)
        and (where.created_after is None or run.created_at >= where.created_after)
        and (where.created_before is None or run.created_at < where.created_before)
        and all(run.tags.get(k) == v for k, v in where.tags.items())
    )


_Valued = TypeVar("_Valued", RunState, TaskState, MapItem)


def _bounded(holder: _Valued, most: int) -> _Valued:
    """`holder` with each input and output over `most` bytes of JSON an `OmittedValue`,
    as the SQL store's bounded read answers."""
    omitted = {}
    for field_name in ("input", "output"):
        value = getattr(holder, field_name)
        if value is not None and (size := len(msgspec.json.encode(value))) > most:
            omitted[field_name] = OmittedValue(size=size)
    return msgspec.structs.replace(holder, **omitted) if omitted else holder


def _page(found: Sequence[T], limit: int, position: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """A page of `limit` items, with a cursor if more follow."""
    items = list(found[:limit])
    if len(found) > limit and items:
        return Page(items=items, next_cursor=encode_cursor(*position(items[-1])))
    return Page(items=items)
