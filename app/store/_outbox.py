"""The outbox methods of `SqlStore`: the relay's marks, the sweeper's claims and pruning."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, true, update

from treadle.ports import OutboxRecord
from treadle.store import _rows as rows_
from treadle.store._database import Database
from treadle.store._errors import mapped_errors
from treadle.store._tables import UNSENT, outbox


class SqlOutbox:
    """The outbox rows, over the store's database."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now

    async def mark_sent(self, ids: Sequence[int]) -> None:
        """Record that these rows were published."""
        if not ids:
            return
        stmt = update(outbox).where(outbox.c.id.in_(list(ids))).values(sent_at=self._now())
        with mapped_errors("mark_sent"):
            async with self._db.transaction(write=True, single=True) as conn:
                await conn.execute(stmt)

    async def claim_unsent(
        self, older_than: datetime, limit: int, *, leased: bool = False
    ) -> list[OutboxRecord]:
        """Unsent rows created before `older_than` (left by a crash), oldest first; a row
        leased to a worker is left alone until its lease has run out, unless `leased`."""
        lease_over = or_(outbox.c.leased_until.is_(None), outbox.c.leased_until < self._now())
        stmt = (
            select(*rows_.OUTBOX_COLUMNS)
            .where(UNSENT, outbox.c.created_at < older_than)
            .where(true() if leased else lease_over)
            .order_by(outbox.c.created_at, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with mapped_errors("claim_unsent"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
        return [rows_.outbox_from_row(r) for r in found]

    async def renew_leases(self, ids: Sequence[int], seconds: float) -> None:
        """Extend the leases of these unsent rows to `seconds` from now."""
        if not ids:
            return
        until = self._now() + timedelta(seconds=seconds)
        stmt = update(outbox).where(outbox.c.id.in_(list(ids)), UNSENT).values(leased_until=until)
        with mapped_errors("renew_leases"):
            async with self._db.transaction(write=True, single=True) as conn:
                await conn.execute(stmt)

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many rows are unsent, and when the oldest was written."""
        stmt = select(func.count(), func.min(outbox.c.created_at)).where(UNSENT)
        with mapped_errors("outbox_backlog"):
            async with self._db.transaction(write=False, single=True) as conn:
                count, oldest = (await conn.execute(stmt)).one()
        return int(count), oldest

    async def prune_sent(self, sent_before: datetime, batch: int) -> int:
        """Delete the rows marked sent before `sent_before`, `batch` at a time; how many.

        Walks the primary key from the oldest row, one window of `batch` rows per step: a
        short read, then a short delete of the window's old sent rows by id (the same plain
        statements on every database, and no delete holds a long lock). Ids grow with
        `created_at` (roughly: within a transaction's length and the clocks' skew) and a
        row is sent after it was written, so the walk stops at the first window that
        reaches a row written at or after `sent_before`; a row it misses that way goes at a
        later call. A steady-state call reads one window, not the whole table (`sent_at`
        has no index outside MySQL).
        """
        window = select(outbox.c.id, outbox.c.created_at, outbox.c.sent_at)
        pruned, after = 0, 0
        with mapped_errors("prune_sent"):
            while True:
                stmt = window.where(outbox.c.id > after).order_by(outbox.c.id).limit(batch)
                async with self._db.transaction(write=False, single=True) as conn:
                    found = (await conn.execute(stmt)).all()
                doomed = [r.id for r in found if r.sent_at is not None and r.sent_at < sent_before]
                if doomed:
                    # `sent_at` again: a row republished (and marked again) since the read
                    # is newer now. A sent row never becomes unsent, so none of these is.
                    delete_ = delete(outbox).where(
                        outbox.c.id.in_(doomed), outbox.c.sent_at < sent_before
                    )
                    async with self._db.transaction(write=True, single=True) as conn:
                        pruned += (await conn.execute(delete_)).rowcount
                if len(found) < batch or found[-1].created_at >= sent_before:
                    return pruned
                after = found[-1].id
