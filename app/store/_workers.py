"""The workers' reports of themselves, and the dispatches waiting for them (see
`WorkerRegistry`)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Insert, delete, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from treadle.ports import WaitingDispatches, WorkerRecord
from treadle.store._database import Database
from treadle.store._errors import mapped_errors
from treadle.store._tables import map_items, runs, tasks, workers

_MYSQL = ("mysql", "mariadb")
_REPORTED = ("host", "pid", "queues", "handlers", "concurrency", "inflight", "last_seen")
_names = msgspec.json.Decoder(list[str])


class SqlWorkers:
    """The workers table, over the store's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record_worker(self, worker: WorkerRecord) -> None:
        """Insert the worker, or replace its row (by id) with this report."""
        row = msgspec.structs.asdict(worker)
        row["queues"] = msgspec.json.encode(worker.queues).decode()
        row["handlers"] = msgspec.json.encode(worker.handlers).decode()
        with mapped_errors("record_worker"):
            async with self._db.transaction(write=True, single=True) as conn:
                await conn.execute(_upsert(self._db.engine.dialect.name), row)

    async def list_workers(self) -> list[WorkerRecord]:
        """Every recorded worker, the most recently seen first."""
        stmt = select(workers).order_by(workers.c.last_seen.desc(), workers.c.id)
        with mapped_errors("list_workers"):
            async with self._db.transaction(write=False) as conn:
                found = (await conn.execute(stmt)).all()
        return [_worker_from_row(r) for r in found]

    async def prune_workers(self, seen_before: datetime) -> int:
        """Delete the workers last seen before `seen_before`; how many went."""
        stmt = delete(workers).where(workers.c.last_seen < seen_before)
        with mapped_errors("prune_workers"):
            async with self._db.transaction(write=True, single=True) as conn:
                return int((await conn.execute(stmt)).rowcount)

    async def waiting_dispatches(self) -> list[WaitingDispatches]:
        """Tasks and map items dispatched but not started, by workflow version and task."""
        found: list[WaitingDispatches] = []
        with mapped_errors("waiting_dispatches"):
            async with self._db.transaction(write=False) as conn:
                for table in (tasks, map_items):
                    rows = await conn.execute(_select_waiting(table))
                    found += [
                        WaitingDispatches(
                            workflow=r.workflow,
                            version=r.version,
                            task_id=r.task_id,
                            count=r.waiting,
                            oldest=r.oldest,
                        )
                        for r in rows
                    ]
        return found


def _select_waiting(table: Any) -> Any:
    """Per workflow version and task: how many rows of `table` wait dispatched, since when.

    `scheduled` with no `scheduled_at` waits out a retry's backoff: no dispatch is out yet.
    """
    return (
        select(
            runs.c.workflow,
            runs.c.version,
            table.c.task_id,
            func.count().label("waiting"),
            func.min(table.c.scheduled_at).label("oldest"),
        )
        .join(runs, runs.c.id == table.c.run_id)
        .where(table.c.status == "scheduled", table.c.scheduled_at.is_not(None))
        .group_by(runs.c.workflow, runs.c.version, table.c.task_id)
    )


def _worker_from_row(row: Any) -> WorkerRecord:
    return WorkerRecord(
        id=row.id,
        host=row.host,
        pid=row.pid,
        queues=_names.decode(row.queues),
        handlers=_names.decode(row.handlers),
        concurrency=row.concurrency,
        inflight=row.inflight,
        started_at=row.started_at,
        last_seen=row.last_seen,
    )


@functools.cache  # built once per dialect
def _upsert(dialect: str) -> Insert:
    """INSERT of a worker's report that replaces what its row said before (but started_at)."""
    if dialect in _MYSQL:
        ins = mysql.insert(workers)
        return ins.on_duplicate_key_update({c: ins.inserted[c] for c in _REPORTED})
    pg_or_lite = postgresql.insert(workers) if dialect == "postgresql" else sqlite.insert(workers)
    return pg_or_lite.on_conflict_do_update(
        index_elements=[workers.c.id], set_={c: pg_or_lite.excluded[c] for c in _REPORTED}
    )
