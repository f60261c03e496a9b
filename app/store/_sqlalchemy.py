"""The `StateStore` on SQLAlchemy Core: SQLite (aiosqlite), PostgreSQL (asyncpg), MySQL.

Every public method is one transaction and maps driver errors through `mapped_errors`.
Lists use keyset pagination (never OFFSET) and fetch one row beyond the page to know
whether another page follows.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Row, func, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.errors import RunNotFound, TaskNotFound, WorkflowNotFound
from treadle.domain.events import HistoryEntry
from treadle.domain.schedules import Backfill, Schedule
from treadle.domain.state import MapItem, RunState, RunStatus
from treadle.ports import (
    DueTimer,
    InflightAttempt,
    MapItemRecord,
    OutboxRecord,
    Page,
    RunCounts,
    RunFilter,
    RunSummary,
    StoredWorkflow,
    WaitingDispatches,
    WorkerRecord,
)
from treadle.store import _rows as rows_
from treadle.store._closing import end_orphaned_closes
from treadle.store._database import Database
from treadle.store._deciding import SqlDecisionBatch, SqlDecisions, load_run
from treadle.store._deliveries import SqlDeliveries
from treadle.store._errors import StoreError, mapped_errors
from treadle.store._map_items import inflight_items, select_item_page
from treadle.store._migrate import is_at_head, upgrade
from treadle.store._outbox import SqlOutbox
from treadle.store._run_filter import run_clauses, select_runs_newest_first
from treadle.store._schedules import SqlSchedules
from treadle.store._tables import ACTIVE_TASK, history, runs, tasks, workflows
from treadle.store._timers import SqlTimers
from treadle.store._types import encode_json
from treadle.store._values import bounded_items, load_bounded_run, load_value
from treadle.store._workers import SqlWorkers

T = TypeVar("T")
_SAVE_WORKFLOW_TRIES = 20  # each lost race means another writer won, so this is plenty


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SqlStore:
    """One adapter for the whole `StateStore` port, over any supported database.

    Reads of workflows and runs are here; decisions, the outbox, timers, schedules and
    delivery counts are parts of their own over the same `Database`, which this class
    hands the port's calls to.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        clock: Callable[[], datetime] = _utc_now,
        ssl_context: ssl.SSLContext | None = None,
        sqlite_synchronous: str = "normal",
    ) -> None:
        self._db = Database(
            url,
            pool_size=pool_size,
            echo=echo,
            ssl_context=ssl_context,
            sqlite_synchronous=sqlite_synchronous,
        )
        self._now = clock
        self._decisions = SqlDecisions(self._db, clock)
        self._outbox = SqlOutbox(self._db, clock)
        self._timers = SqlTimers(self._db)
        self._schedules = SqlSchedules(self._db, clock)
        self._deliveries = SqlDeliveries(self._db)
        self._workers = SqlWorkers(self._db)

    @property
    def url(self) -> str:
        """The database URL, password included (for building a second store on it)."""
        return self._db.url.render_as_string(hide_password=False)

    @property
    def dialect(self) -> str:
        """The database's dialect name: `sqlite`, `postgresql` or `mysql`."""
        return self._db.dialect

    # --- lifecycle ---------------------------------------------------------------------

    async def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to call again, or concurrently)."""
        with mapped_errors("migrate"):
            async with self._db.transaction(write=True) as conn:
                await upgrade(conn)

    async def ping(self) -> None:
        """Raise `StoreUnavailable` if the database cannot be reached."""
        with mapped_errors("ping"):
            async with self._db.transaction(write=False, single=True) as conn:
                await conn.execute(text("SELECT 1"))

    async def schema_is_current(self) -> bool:
        """Whether the schema is at the packaged migrations' head (for readiness)."""
        with mapped_errors("schema_is_current"):
            async with self._db.transaction(write=False) as conn:
                return await is_at_head(conn)

    async def close(self) -> None:
        """Release every pooled connection (and end SQLite's orphaned closes)."""
        await self._db.dispose()
        await end_orphaned_closes()

    # --- decisions, outbox, timers, schedules, deliveries: the parts -------------------

    def deciding(self, run_ids: Collection[str]) -> AbstractAsyncContextManager[SqlDecisionBatch]:
        """One transaction holding `run_ids` locked (see `DecisionStore.deciding`)."""
        return self._decisions.deciding(run_ids)

    async def mark_sent(self, ids: Sequence[int]) -> None:
        await self._outbox.mark_sent(ids)

    async def claim_unsent(
        self, older_than: datetime, limit: int, *, leased: bool = False
    ) -> list[OutboxRecord]:
        return await self._outbox.claim_unsent(older_than, limit, leased=leased)

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        await self._outbox.renew_leases(ids, seconds)

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        return await self._outbox.outbox_backlog()

    async def prune_sent(self, sent_before: datetime, batch: int) -> int:
        return await self._outbox.prune_sent(sent_before, batch)

    async def claim_due_timers(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueTimer]:
        return await self._timers.claim_due_timers(now, limit, lease_seconds)

    async def next_timer_at(self) -> datetime | None:
        return await self._timers.next_timer_at()

    async def count_overdue_timers(self, now: datetime, cap: int) -> int:
        return await self._timers.count_overdue_timers(now, cap)

    async def list_timers(self, run_id: str) -> list[DueTimer]:
        return await self._timers.list_timers(run_id)

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        return await self._schedules.create_schedule(schedule)

    async def get_schedule(self, schedule_id: str) -> Schedule:
        return await self._schedules.get_schedule(schedule_id)

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        return await self._schedules.list_schedules(limit, cursor)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime
    ) -> Schedule:
        return await self._schedules.set_schedule_paused(schedule_id, paused, next_fire_at)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._schedules.delete_schedule(schedule_id)

    async def claim_due_schedules(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[Schedule]:
        return await self._schedules.claim_due_schedules(now, limit, lease_seconds)

    async def advance_schedule(
        self,
        schedule_id: str,
        *,
        next_fire_at: datetime,
        fired_at: datetime | None,
        run_id: str | None,
    ) -> None:
        await self._schedules.advance_schedule(
            schedule_id, next_fire_at=next_fire_at, fired_at=fired_at, run_id=run_id
        )

    async def update_schedule(self, schedule: Schedule) -> Schedule:
        return await self._schedules.update_schedule(schedule)

    async def record_schedule_run(self, schedule_id: str, fired_at: datetime, run_id: str) -> None:
        await self._schedules.record_schedule_run(schedule_id, fired_at, run_id)

    async def start_backfill(self, schedule_id: str, backfill: Backfill) -> Schedule:
        return await self._schedules.start_backfill(schedule_id, backfill)

    async def advance_backfill(self, schedule_id: str, backfill: Backfill | None) -> None:
        await self._schedules.advance_backfill(schedule_id, backfill)

    async def count_delivery(
        self, run_id: str, task_id: str, attempt: int, item: int | None
    ) -> int:
        return await self._deliveries.count_delivery(run_id, task_id, attempt, item)

    async def record_worker(self, worker: WorkerRecord) -> None:
        await self._workers.record_worker(worker)

    async def list_workers(self) -> list[WorkerRecord]:
        return await self._workers.list_workers()

    async def prune_workers(self, seen_before: datetime) -> int:
        return await self._workers.prune_workers(seen_before)

    async def waiting_dispatches(self) -> list[WaitingDispatches]:
        return await self._workers.waiting_dispatches()

    # --- workflows ---------------------------------------------------------------------

    async def save_workflow(
        self, name: str, definition: dict[str, Any], digest: str
    ) -> tuple[StoredWorkflow, bool]:
        """Store version latest+1 unless the latest has this digest; (workflow, created)."""
        for _ in range(_SAVE_WORKFLOW_TRIES):
            try:
                with mapped_errors("save_workflow"):
                    return await self._try_save_workflow(name, definition, digest)
            except StoreError as exc:
                # Another writer took the version we computed: look at the latest again.
                if not isinstance(exc.__cause__, sa_exc.IntegrityError):
                    raise
        raise StoreError("save_workflow", f"too much contention on workflow {name!r}")

    async def _try_save_workflow(
        self, name: str, definition: dict[str, Any], digest: str
    ) -> tuple[StoredWorkflow, bool]:
        async with self._db.transaction(write=True) as conn:
            latest = await _latest_workflow(conn, name)
            if latest is not None and latest.digest == digest:
                return latest, False
            stored = StoredWorkflow(
                name=name,
                version=latest.version + 1 if latest else 1,
                definition=definition,
                digest=digest,
                created_at=self._now(),
            )
            values = {f: getattr(stored, f) for f in stored.__struct_fields__}
            values["definition"] = encode_json(definition)
            await conn.execute(workflows.insert(), values)
            return stored, True

    async def get_workflow(self, name: str, version: int | None = None) -> StoredWorkflow:
        """The given version, or the latest; raises `WorkflowNotFound`."""
        with mapped_errors("get_workflow"):
            async with self._db.transaction(write=False, single=True) as conn:
                if version is None:
                    found = await _latest_workflow(conn, name)
                else:
                    stmt = select(workflows).where(
                        workflows.c.name == name, workflows.c.version == version
                    )
                    row = (await conn.execute(stmt)).first()
                    found = rows_.workflow_from_row(row) if row else None
        if found is None:
            raise WorkflowNotFound(name, version)
        return found

    async def list_workflows(self, limit: int, cursor: str | None) -> Page[StoredWorkflow]:
        """The latest version of each workflow, by name."""
        newer = workflows.alias("newer")
        stmt = (
            select(workflows)
            .where(
                ~select(newer.c.version)
                .where(newer.c.name == workflows.c.name, newer.c.version > workflows.c.version)
                .exists()
            )
            .order_by(workflows.c.name)
            .limit(limit + 1)
        )
        if cursor is not None:
            (after,) = rows_.decode_cursor(cursor, "workflows", tuple[str])
            stmt = stmt.where(workflows.c.name > after)
        with mapped_errors("list_workflows"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
        return _page(found, limit, rows_.workflow_from_row, lambda w: ("workflows", w.name))

    async def list_versions(
        self, name: str, limit: int, cursor: str | None
    ) -> Page[StoredWorkflow]:
        """Every version of one workflow, newest first; raises `WorkflowNotFound`."""
        stmt = (
            select(workflows)
            .where(workflows.c.name == name)
            .order_by(workflows.c.version.desc())
            .limit(limit + 1)
        )
        if cursor is not None:
            (before,) = rows_.decode_cursor(cursor, "versions", tuple[rows_.Int32])
            stmt = stmt.where(workflows.c.version < before)
        with mapped_errors("list_versions"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
                if not found and await _latest_workflow(conn, name) is None:
                    raise WorkflowNotFound(name)
        return _page(found, limit, rows_.workflow_from_row, lambda w: ("versions", w.version))

    # --- runs --------------------------------------------------------------------------

    async def get_run(self, run_id: str) -> RunState:
        """The run with all its tasks; raises `RunNotFound`."""
        with mapped_errors("get_run"):
            async with self._db.transaction(write=False, single=True) as conn:
                return await load_run(conn, run_id, lock=False)

    async def get_run_bounded(self, run_id: str, most_bytes: int) -> RunState:
        """The run with its tasks, each input and output over `most_bytes` as JSON an
        `OmittedValue` (left in the database); raises `RunNotFound`."""
        with mapped_errors("get_run_bounded"):
            async with self._db.transaction(write=False, single=True) as conn:
                return await load_bounded_run(conn, run_id, most_bytes)

    async def get_value(
        self, run_id: str, task_id: str | None, item: int | None, field: str
    ) -> str | None:
        """The stored JSON of one input or output, None for null; raises `RunNotFound`,
        `TaskNotFound`."""
        with mapped_errors("get_value"):
            async with self._db.transaction(write=False) as conn:
                return await load_value(conn, run_id, task_id, item, field)

    async def list_runs(
        self, where: RunFilter, *, limit: int, cursor: str | None
    ) -> Page[RunSummary]:
        """Runs newest first (by creation time, then id); raises `InvalidCursor`.

        Every filter combination reads an index in order (see `_tables.runs` and
        `_tables.run_tags`), so a page costs its own rows however many runs there are.
        """
        after = None
        if cursor is not None:
            after = rows_.decode_cursor(cursor, "runs", rows_.RunsCursor)
        stmt = select_runs_newest_first(rows_.SUMMARY_COLUMNS, where, after).limit(limit + 1)
        with mapped_errors("list_runs"):
            async with self._db.transaction(write=False, single=True) as conn:
                found = (await conn.execute(stmt)).all()
        return _page(found, limit, rows_.summary_from_row, lambda r: ("runs", r.created_at, r.id))

    async def count_runs(
        self, *, workflow: str | None, created_after: datetime | None, cap: int
    ) -> RunCounts:
        """How many runs have each status, counting at most `cap + 1` rows per status.

        Each count reads a LIMITed subquery over the (workflow,) status, created_at index,
        so one request costs at most `cap + 1` index entries per status, not a table scan.
        """
        columns = [
            select(func.count())
            .select_from(
                select(runs.c.id)
                .where(
                    *run_clauses(
                        RunFilter(
                            workflow=workflow, status=status.value, created_after=created_after
                        )
                    )
                )
                .limit(cap + 1)
                .subquery()
            )
            .scalar_subquery()
            .label(status.value)
            for status in RunStatus
        ]
        with mapped_errors("count_runs"):
            async with self._db.transaction(write=False, single=True) as conn:
                row = (await conn.execute(select(*columns))).one()
        raw = {status.value: int(row._mapping[status.value]) for status in RunStatus}
        return RunCounts(
            counts={k: min(n, cap) for k, n in raw.items()},
            capped=any(n > cap for n in raw.values()),
            cap=cap,
        )

    async def list_history(self, run_id: str, limit: int, cursor: str | None) -> Page[HistoryEntry]:
        """A run's history, oldest first; raises `RunNotFound`, `InvalidCursor`."""
        stmt = (
            select(*rows_.HISTORY_COLUMNS)
            .where(history.c.run_id == run_id)
            .order_by(history.c.id)
            .limit(limit + 1)
        )
        if cursor is not None:
            (after,) = rows_.decode_cursor(cursor, "history", tuple[rows_.Int64])
            stmt = stmt.where(history.c.id > after)
        with mapped_errors("list_history"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
                if not found and not await _run_exists(conn, run_id):
                    raise RunNotFound(run_id)
        page = _page(found, limit, lambda r: r, lambda r: ("history", r.id))
        items = [rows_.history_from_row(r) for r in page.items]
        return Page(items=items, next_cursor=page.next_cursor)

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
        given), each input and output over `most_bytes` as JSON an `OmittedValue` (left in
        the database); raises `RunNotFound`, `TaskNotFound`, `InvalidCursor`."""
        after = None
        if cursor is not None:
            (after,) = rows_.decode_cursor(cursor, "items", tuple[rows_.Int32])
        stmt = select_item_page(run_id, task_id, limit, after, status=status, from_index=from_index)
        convert: Callable[[Row[Any]], MapItem] = rows_.item_from_row
        if most_bytes is not None:
            stmt, convert = bounded_items(stmt, most_bytes)
        with mapped_errors("list_map_items"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
                if not found:
                    await _check_map_task(conn, run_id, task_id)
        page = _page(found, limit, convert, lambda i: ("items", i.index))
        return Page(items=[rows_.item_record(i) for i in page.items], next_cursor=page.next_cursor)

    async def inflight_attempts(self, limit: int, after: str | None) -> list[InflightAttempt]:
        """Attempts in `scheduled` or `running`, ordered by run id (for recovery).

        A page never ends inside a run: when the limit falls in the middle of one, the rest
        of that run's attempts come too, so passing the last run id as `after` skips none.
        The dispatched items of the page's running maps come with them (a map in flight is
        a running task, so its run is in the page).
        """
        columns = (tasks.c.run_id, tasks.c.task_id, tasks.c.attempt, tasks.c.type)
        stmt = select(*columns).where(ACTIVE_TASK).order_by(tasks.c.run_id, tasks.c.task_id)
        if after is not None:
            stmt = stmt.where(tasks.c.run_id > after)
        with mapped_errors("inflight_attempts"):
            async with self._db.transaction(write=False) as conn:
                found = list((await conn.execute(stmt.limit(limit))).all())
                if found and len(found) == limit:
                    last = found[-1]
                    rest = select(*columns).where(
                        ACTIVE_TASK, tasks.c.run_id == last.run_id, tasks.c.task_id > last.task_id
                    )
                    found += (await conn.execute(rest.order_by(tasks.c.task_id))).all()
                maps = sorted({r.run_id for r in found if r.type == "map"})
                items = await inflight_items(conn, maps)
        attempts = [
            InflightAttempt(run_id=r.run_id, task_id=r.task_id, attempt=r.attempt) for r in found
        ]
        return sorted([*attempts, *items], key=_attempt_order)


# --- helpers ---------------------------------------------------------------------------


def _attempt_order(attempt: InflightAttempt) -> tuple[str, str, int]:
    """By run (recovery pages by run id), then task, a map task before its items."""
    return (attempt.run_id, attempt.task_id, -1 if attempt.item is None else attempt.item)


async def _check_map_task(conn: AsyncConnection, run_id: str, task_id: str) -> None:
    """Raise unless the run exists and has a map task `task_id`."""
    if not await _run_exists(conn, run_id):
        raise RunNotFound(run_id)
    stmt = select(tasks.c.type).where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)
    if (await conn.execute(stmt)).scalar() != "map":
        raise TaskNotFound(run_id, task_id, "map task")


async def _run_exists(conn: AsyncConnection, run_id: str) -> bool:
    return (await conn.execute(select(runs.c.id).where(runs.c.id == run_id))).first() is not None


async def _latest_workflow(conn: AsyncConnection, name: str) -> StoredWorkflow | None:
    stmt = (
        select(workflows)
        .where(workflows.c.name == name)
        .order_by(workflows.c.version.desc())
        .limit(1)
    )
    row = (await conn.execute(stmt)).first()
    return rows_.workflow_from_row(row) if row else None


def _page(
    found: Sequence[Row[Any]],
    limit: int,
    convert: Callable[[Row[Any]], T],
    position: Callable[[T], tuple[Any, ...]],
) -> Page[T]:
    """A page of `limit` items from `limit + 1` rows, with a cursor if the extra row exists."""
    items = [convert(r) for r in found[:limit]]
    if len(found) > limit and items:
        return Page(items=items, next_cursor=rows_.encode_cursor(*position(items[-1])))
    return Page(items=items)
