"""The durable-timer methods of `SqlStore`: claimed under a lease, one claimer each."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.ports import DueTimer
from treadle.store import _rows as rows_
from treadle.store._database import Database
from treadle.store._errors import mapped_errors
from treadle.store._tables import timers


class SqlTimers:
    """Durable timers, over the store's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim_due_timers(
        self, now: datetime, limit: int, lease_seconds: float
    ) -> list[DueTimer]:
        """Timers due at `now` and not leased by another orchestrator; leases them."""
        key = tuple_(timers.c.run_id, timers.c.kind, timers.c.task_id, timers.c.attempt)
        due = (
            select(timers.c.run_id, timers.c.kind, timers.c.task_id, timers.c.attempt)
            .where(
                timers.c.fire_at <= now,
                or_(timers.c.leased_until.is_(None), timers.c.leased_until < now),
            )
            .order_by(timers.c.fire_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        lease = update(timers).values(leased_until=now + timedelta(seconds=lease_seconds))
        with mapped_errors("claim_due_timers"):
            async with self._db.transaction(write=True) as conn:
                if conn.dialect.update_returning:
                    stmt = lease.where(key.in_(due)).returning(*rows_.TIMER_COLUMNS)
                    found = list((await conn.execute(stmt)).all())
                    found.sort(key=lambda r: r.fire_at)
                else:
                    found = await _claim_by_select(conn, due, lease)
        return [rows_.timer_from_row(r) for r in found]

    async def next_timer_at(self) -> datetime | None:
        """When the earliest timer is due (leased ones included)."""
        with mapped_errors("next_timer_at"):
            async with self._db.transaction(write=False, single=True) as conn:
                earliest: datetime | None = (
                    await conn.execute(select(func.min(timers.c.fire_at)))
                ).scalar()
        return earliest

    async def list_timers(self, run_id: str) -> list[DueTimer]:
        """The run's timers not fired yet (leased ones too), earliest first (a key range)."""
        stmt = (
            select(*rows_.TIMER_COLUMNS)
            .where(timers.c.run_id == run_id)
            .order_by(timers.c.fire_at, timers.c.kind, timers.c.task_id)
        )
        with mapped_errors("list_timers"):
            async with self._db.transaction(write=False, single=True) as conn:
                found = (await conn.execute(stmt)).all()
        return [rows_.timer_from_row(r) for r in found]

    async def count_overdue_timers(self, now: datetime, cap: int) -> int:
        """Timers due at `now` and not yet fired, counted up to `cap` (an index range scan)."""
        due = select(timers.c.run_id).where(timers.c.fire_at <= now).limit(cap).subquery()
        with mapped_errors("count_overdue_timers"):
            async with self._db.transaction(write=False, single=True) as conn:
                counted = (await conn.execute(select(func.count()).select_from(due))).scalar()
        return int(counted or 0)


async def _claim_by_select(conn: AsyncConnection, due: Any, lease: Any) -> list[Row[Any]]:
    """Claim without UPDATE ... RETURNING (MySQL): lock the due rows, then lease them."""
    key_columns = (timers.c.run_id, timers.c.kind, timers.c.task_id, timers.c.attempt)
    keys = [tuple(r) for r in (await conn.execute(due)).all()]
    if not keys:
        return []
    key = tuple_(*key_columns)
    await conn.execute(lease.where(key.in_(keys)))
    stmt = select(*rows_.TIMER_COLUMNS).where(key.in_(keys)).order_by(timers.c.fire_at)
    return list((await conn.execute(stmt)).all())
