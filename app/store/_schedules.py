"""The `ScheduleStore` half of `SqlStore`: schedules, and claiming the due ones.

Claiming leases a due schedule for a while (`FOR UPDATE SKIP LOCKED` on PostgreSQL and
MariaDB, the single writer on SQLite), so one orchestrator handles a tick while the others
pass over it; the run it starts carries a per-tick idempotency key, so even a holder whose
lease ran out cannot start a second run for the same tick.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, delete, or_, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.schedules import (
    Backfill,
    BackfillInProgress,
    CatchUpPolicy,
    OverlapPolicy,
    Schedule,
    ScheduleExists,
    ScheduleNotFound,
    Trigger,
)
from treadle.ports import Page
from treadle.store import _rows as rows_
from treadle.store._database import Database
from treadle.store._errors import StoreError, mapped_errors
from treadle.store._tables import schedules
from treadle.store._types import decode_json, encode_json


class SqlSchedules:
    """Schedules, over the store's database."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now

    async def create_schedule(self, schedule: Schedule) -> Schedule:
        """Store a new schedule; raises `ScheduleExists` when its name is taken."""
        try:
            with mapped_errors("create_schedule"):
                async with self._db.transaction(write=True) as conn:
                    await conn.execute(schedules.insert(), _values(schedule))
        except StoreError as exc:
            if isinstance(exc.__cause__, sa_exc.IntegrityError):
                raise ScheduleExists(schedule.name) from exc
            raise
        return schedule

    async def get_schedule(self, schedule_id: str) -> Schedule:
        """The schedule; raises `ScheduleNotFound`."""
        with mapped_errors("get_schedule"):
            async with self._db.transaction(write=False) as conn:
                return await _load(conn, schedule_id)

    async def list_schedules(self, limit: int, cursor: str | None) -> Page[Schedule]:
        """Schedules by name; raises `InvalidCursor`."""
        stmt = select(schedules).order_by(schedules.c.name).limit(limit + 1)
        if cursor is not None:
            (after,) = rows_.decode_cursor(cursor, "schedules", tuple[str])
            stmt = stmt.where(schedules.c.name > after)
        with mapped_errors("list_schedules"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
        items = [_from_row(r) for r in found[:limit]]
        if len(found) > limit and items:
            return Page(items=items, next_cursor=rows_.encode_cursor("schedules", items[-1].name))
        return Page(items=items)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime
    ) -> Schedule:
        """Pause or resume; a resumed schedule fires next at `next_fire_at`."""
        stmt = (
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(paused=paused, next_fire_at=next_fire_at, leased_until=None)
        )
        with mapped_errors("set_schedule_paused"):
            async with self._db.transaction(write=True) as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    raise ScheduleNotFound(schedule_id)
                return await _load(conn, schedule_id)

    async def delete_schedule(self, schedule_id: str) -> None:
        """Delete the schedule (its runs stay); raises `ScheduleNotFound`."""
        stmt = delete(schedules).where(schedules.c.id == schedule_id)
        with mapped_errors("delete_schedule"):
            async with self._db.transaction(write=True) as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    raise ScheduleNotFound(schedule_id)

    async def claim_due_schedules(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[Schedule]:
        """Active schedules due at `now` that no one else holds; leases them."""
        due = (
            select(schedules.c.id)
            .where(
                schedules.c.paused.is_(False),
                or_(schedules.c.next_fire_at <= now, schedules.c.backfill.is_not(None)),
                or_(schedules.c.leased_until.is_(None), schedules.c.leased_until < now),
            )
            .order_by(schedules.c.next_fire_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        until = now + timedelta(seconds=lease_seconds)
        with mapped_errors("claim_due_schedules"):
            async with self._db.transaction(write=True) as conn:
                ids = list((await conn.execute(due)).scalars())
                if not ids:
                    return []
                lease = update(schedules).where(schedules.c.id.in_(ids))
                await conn.execute(lease.values(leased_until=until))
                stmt = select(schedules).where(schedules.c.id.in_(ids))
                found = (await conn.execute(stmt.order_by(schedules.c.next_fire_at))).all()
        return [_from_row(r) for r in found]

    async def advance_schedule(
        self,
        schedule_id: str,
        *,
        next_fire_at: datetime,
        fired_at: datetime | None,
        run_id: str | None,
    ) -> None:
        """Record a handled tick and release the lease (a deleted schedule is ignored)."""
        values: dict[str, Any] = {"next_fire_at": next_fire_at, "leased_until": None}
        if fired_at is not None:
            values["last_fire_at"] = fired_at
        if run_id is not None:
            values["last_run_id"] = run_id
        stmt = update(schedules).where(schedules.c.id == schedule_id).values(**values)
        with mapped_errors("advance_schedule"):
            async with self._db.transaction(write=True) as conn:
                await conn.execute(stmt)

    async def update_schedule(self, schedule: Schedule) -> Schedule:
        """Replace what the schedule does and its next fire time; raises `ScheduleNotFound`."""
        values = {k: v for k, v in _values(schedule).items() if k in _SPEC_COLUMNS}
        stmt = update(schedules).where(schedules.c.id == schedule.id).values(**values)
        with mapped_errors("update_schedule"):
            async with self._db.transaction(write=True) as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    raise ScheduleNotFound(schedule.id)
                return await _load(conn, schedule.id)

    async def record_schedule_run(self, schedule_id: str, fired_at: datetime, run_id: str) -> None:
        """Record a run started outside the ticks (a trigger); raises `ScheduleNotFound`."""
        stmt = (
            update(schedules)
            .where(schedules.c.id == schedule_id)
            .values(last_fire_at=fired_at, last_run_id=run_id)
        )
        with mapped_errors("record_schedule_run"):
            async with self._db.transaction(write=True) as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    raise ScheduleNotFound(schedule_id)

    async def start_backfill(self, schedule_id: str, backfill: Backfill) -> Schedule:
        """Begin a backfill; raises `ScheduleNotFound`, `BackfillInProgress`."""
        stmt = (
            update(schedules)
            .where(schedules.c.id == schedule_id, schedules.c.backfill.is_(None))
            .values(backfill=encode_json(backfill))
        )
        with mapped_errors("start_backfill"):
            async with self._db.transaction(write=True) as conn:
                if (await conn.execute(stmt)).rowcount == 0:
                    await _load(conn, schedule_id)  # raises ScheduleNotFound
                    raise BackfillInProgress(schedule_id)
                return await _load(conn, schedule_id)

    async def advance_backfill(self, schedule_id: str, backfill: Backfill | None) -> None:
        """Move the backfill's cursor, or end it with None; a schedule without one (stopped,
        or deleted) is left as it is."""
        value = encode_json(backfill) if backfill is not None else None
        # Only over a backfill still there: one stopped meanwhile stays stopped.
        stmt = (
            update(schedules)
            .where(schedules.c.id == schedule_id, schedules.c.backfill.is_not(None))
            .values(backfill=value)
        )
        with mapped_errors("advance_backfill"):
            async with self._db.transaction(write=True) as conn:
                await conn.execute(stmt)


_SPEC_COLUMNS = frozenset(
    {"workflow", "version", "input", "cron", "timezone", "interval_ms"}
    | {"overlap", "catch_up", "tags", "next_fire_at"}
)


async def _load(conn: AsyncConnection, schedule_id: str) -> Schedule:
    row = (await conn.execute(select(schedules).where(schedules.c.id == schedule_id))).first()
    if row is None:
        raise ScheduleNotFound(schedule_id)
    return _from_row(row)


def _values(s: Schedule) -> dict[str, Any]:
    interval = s.trigger.interval_seconds
    return {
        "id": s.id,
        "name": s.name,
        "workflow": s.workflow,
        "version": s.version,
        "input": encode_json(s.input),
        "cron": s.trigger.cron,
        "timezone": s.trigger.timezone,
        "interval_ms": round(interval * 1000) if interval is not None else None,
        "overlap": s.overlap.value,
        "catch_up": s.catch_up.value,
        "paused": s.paused,
        "next_fire_at": s.next_fire_at,
        "last_fire_at": s.last_fire_at,
        "last_run_id": s.last_run_id,
        "created_at": s.created_at,
        "tags": encode_json(s.tags) if s.tags else None,
        "backfill": encode_json(s.backfill) if s.backfill is not None else None,
    }


def _from_row(row: Row[Any]) -> Schedule:
    m = row._mapping
    interval_ms = m["interval_ms"]
    return Schedule(
        id=m["id"],
        name=m["name"],
        workflow=m["workflow"],
        version=m["version"],
        input=decode_json(m["input"], Any),
        trigger=Trigger(
            cron=m["cron"],
            timezone=m["timezone"],
            interval_seconds=interval_ms / 1000 if interval_ms is not None else None,
        ),
        overlap=OverlapPolicy(m["overlap"]),
        catch_up=CatchUpPolicy(m["catch_up"]),
        paused=bool(m["paused"]),
        next_fire_at=m["next_fire_at"],
        last_fire_at=m["last_fire_at"],
        last_run_id=m["last_run_id"],
        created_at=m["created_at"],
        tags=decode_json(m["tags"], dict[str, str]) or {},
        backfill=decode_json(m["backfill"], Backfill),
    )
