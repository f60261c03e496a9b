"""The worker's count of its deliveries of each attempt (see `DeliveryCounter`)."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Insert, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from treadle.store._database import Database
from treadle.store._errors import mapped_errors
from treadle.store._tables import deliveries

NO_ITEM = -1
"""`item` of an attempt that is not a map item's (a primary key column cannot be NULL)."""
_MYSQL = ("mysql", "mariadb")


class SqlDeliveries:
    """Delivery counts, over the store's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def count_delivery(
        self, run_id: str, task_id: str, attempt: int, item: int | None
    ) -> int:
        """Count one more delivery of the attempt; how many so far, this one included."""
        key: dict[str, Any] = {
            "run_id": run_id,
            "task_id": task_id,
            "attempt": attempt,
            "item": NO_ITEM if item is None else item,
        }
        dialect = self._db.engine.dialect.name
        with mapped_errors("count_delivery"):
            if dialect in _MYSQL:
                # No RETURNING after ON DUPLICATE KEY UPDATE: the count is read back in the
                # same transaction, which holds the row's lock.
                read = select(deliveries.c.count).where(
                    *(deliveries.c[name] == value for name, value in key.items())
                )
                async with self._db.transaction(write=True) as conn:
                    await conn.execute(_count_one_more(dialect), {**key, "count": 1})
                    return int((await conn.execute(read)).scalar_one())
            async with self._db.transaction(write=True, single=True) as conn:
                counted = await conn.execute(_count_one_more(dialect), {**key, "count": 1})
                return int(counted.scalar_one())


@functools.cache  # built once per dialect
def _count_one_more(dialect: str) -> Insert:
    """INSERT of a first delivery that adds one to the count if the row exists (and, but
    on MySQL, returns the count)."""
    if dialect in _MYSQL:
        return mysql.insert(deliveries).on_duplicate_key_update(count=deliveries.c.count + 1)
    pg_or_lite = (
        postgresql.insert(deliveries) if dialect == "postgresql" else sqlite.insert(deliveries)
    )
    return pg_or_lite.on_conflict_do_update(
        index_elements=[
            deliveries.c.run_id,
            deliveries.c.task_id,
            deliveries.c.attempt,
            deliveries.c.item,
        ],
        set_={"count": deliveries.c.count + 1},
    ).returning(deliveries.c.count)
