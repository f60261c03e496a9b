"""Decision transactions of `SqlStore`: `deciding(run_ids)`, a unit of work.

Entering locks the runs and reads their states, or reuses the state this process
committed last (`_states`); the caller reads them, records what it decided and the runs it
creates; leaving writes everything with one statement per kind of write (`_decisions`)
and commits. Where the database has UPDATE ... RETURNING (PostgreSQL, SQLite), locking a
run is incrementing its revision, which also tells whether the kept state is current;
MySQL locks with locking reads and keeps nothing.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.errors import RunNotFound
from treadle.domain.state import ItemQuery, RunState
from treadle.ports import Applied
from treadle.store import _rows as rows_
from treadle.store._book import DecisionBook
from treadle.store._database import Database
from treadle.store._decisions import DecisionWrites
from treadle.store._errors import StoreError, mapped_errors
from treadle.store._map_items import load_items
from treadle.store._states import KeptStates
from treadle.store._tables import runs


class SqlDecisions:
    """The decision side of `SqlStore`: transactions over its database, and the states
    they committed, kept to spare the next decision on a run its read."""

    def __init__(self, db: Database, now: Callable[[], datetime]) -> None:
        self._db = db
        self._now = now
        self._kept = KeptStates()

    @asynccontextmanager
    async def deciding(self, run_ids: Collection[str]) -> AsyncIterator[SqlDecisionBatch]:
        """One transaction holding `run_ids` locked; see `DecisionStore.deciding`."""
        ordered = sorted(set(run_ids))
        batch: SqlDecisionBatch | None = None
        try:
            with mapped_errors("apply"):
                async with self._db.transaction(write=True) as conn:
                    locked = await self._lock_and_load(conn, ordered)
                    batch = SqlDecisionBatch(conn, locked)
                    yield batch
                    await batch.flush(self._now())
        except BaseException:
            for run_id in [*ordered, *(batch.creating if batch else ())]:
                self._kept.forget(run_id)
            raise
        for revision, state in batch.committed_states():
            self._kept.keep(revision, state)

    async def _lock_and_load(
        self, conn: AsyncConnection, run_ids: Sequence[str]
    ) -> dict[str, tuple[int | None, RunState]]:
        """Lock these runs in id order; each found one's new revision and state."""
        if not run_ids:
            return {}
        if not conn.dialect.update_returning:
            return await _lock_by_reading(conn, run_ids)
        result = await conn.execute(_bump_revisions(conn.dialect.name), {"ids": list(run_ids)})
        bumped: dict[str, int] = {row[0]: row[1] for row in result}
        found: dict[str, tuple[int | None, RunState]] = {}
        unknown: list[str] = []
        for run_id, revision in bumped.items():
            kept = self._kept.at(run_id, revision - 1)
            if kept is None:
                unknown.append(run_id)
            else:
                found[run_id] = (revision, kept)
        if unknown:
            # Read in a new statement, after the lock (see `load_run`).
            rows = (await conn.execute(_RUNS_BY_IDS, {"ids": unknown})).all()
            for run_id, state in _states_of(rows).items():
                found[run_id] = (bumped[run_id], state)
        return found


class SqlDecisionBatch(DecisionBook):
    """The `DecisionBatch` of one SQL transaction."""

    def __init__(
        self, conn: AsyncConnection, locked: dict[str, tuple[int | None, RunState]]
    ) -> None:
        super().__init__({run_id: state for run_id, (_, state) in locked.items()})
        self._conn = conn
        self._revisions = {run_id: revision for run_id, (revision, _) in locked.items()}

    async def with_items(self, run_id: str, query: ItemQuery) -> RunState:
        """The locked run with the map items `query` names; raises `RunNotFound`."""
        state = self.state(run_id)
        with mapped_errors("apply"):
            found = await load_items(self._conn, run_id, query)
        return self._read_items(msgspec.structs.replace(state, map_items=found))

    async def flush(self, now: datetime) -> None:
        """Write every create and decision: run rows first, then each kind in one statement."""
        await self._insert_runs(now)
        writes = DecisionWrites(now)
        order = [run_id for run_id in self._creates if run_id in self._inserted]
        for run_id in order:
            writes.add_created(*self._creates[run_id])
        for run_id, changes in self._decided.items():
            writes.add(self._read[run_id], changes)
            order.append(run_id)
        records = await writes.flush(self._conn)
        for run_id, outbox in zip(order, records, strict=True):
            created = self._creates.get(run_id)
            state = created[0] if created else self._decided[run_id].state
            self._applied[run_id] = Applied(state=state, outbox=outbox)

    async def _insert_runs(self, now: datetime) -> None:
        """Insert the new runs' rows: those without a key in one statement, each keyed one
        on its own (a taken key leaves it out, answered by the run holding it)."""
        keyless = [state for state, _ in self._creates.values() if state.idempotency_key is None]
        if keyless:
            await self._conn.execute(_INSERT_RUN, [rows_.run_values(s, now) for s in keyless])
            self._inserted.update(state.id for state in keyless)
        for run_id, (state, _) in self._creates.items():
            if state.idempotency_key is None:
                continue
            if await _insert_run(self._conn, state, now):
                self._inserted.add(run_id)
            else:
                existing = await _load_run_by_key(self._conn, state.idempotency_key)
                self._applied[run_id] = Applied(state=existing, outbox=[])

    def committed_states(self) -> list[tuple[int, RunState]]:
        """(revision, state) of each run as this transaction left it, to keep."""
        kept: list[tuple[int, RunState]] = []
        for run_id, revision in self._revisions.items():
            if revision is not None:
                changes = self._decided.get(run_id)
                kept.append((revision, changes.state if changes else self._locked[run_id]))
        if self._conn.dialect.update_returning:
            # A new run row starts at revision 0.
            kept += [(0, self._creates[run_id][0]) for run_id in self._inserted]
        return kept


async def _lock_by_reading(
    conn: AsyncConnection, run_ids: Sequence[str]
) -> dict[str, tuple[int | None, RunState]]:
    """MySQL: lock each run with a locking read, in id order; nothing is kept."""
    found: dict[str, tuple[int | None, RunState]] = {}
    for run_id in run_ids:
        try:
            found[run_id] = (None, await load_run(conn, run_id, lock=True))
        except RunNotFound:
            continue
    return found


def _states_of(rows: Sequence[Row[Any]]) -> dict[str, RunState]:
    """The run states in rows of `select_run_with_tasks` covering several runs."""
    by_run: dict[str, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        by_run[row._mapping["id"]].append(row)
    return {run_id: rows_.run_from_rows(found) for run_id, found in by_run.items()}


@functools.cache  # built once per dialect
def _bump_revisions(dialect: str) -> Any:
    """Increment the revision of the runs in `ids`, locking them in id order; (id, revision).

    PostgreSQL locks in the order the subquery's FOR UPDATE visits the rows; SQLite's
    writer is already exclusive.
    """
    wanted = runs.c.id.in_(bindparam("ids", expanding=True))
    if dialect == "postgresql":
        locked = select(runs.c.id).where(wanted).order_by(runs.c.id).with_for_update()
        wanted = runs.c.id.in_(locked.scalar_subquery())
    return (
        update(runs)
        .where(wanted)
        .values(revision=runs.c.revision + 1)
        .returning(runs.c.id, runs.c.revision)
    )


# Built once: constructing the join costs more CPU than SQLAlchemy's cached compile of it.
_RUN_BY_ID = rows_.select_run_with_tasks().where(runs.c.id == bindparam("b_run_id"))
_RUN_BY_ID_FOR_UPDATE = _RUN_BY_ID.with_for_update()
_RUNS_BY_IDS = rows_.select_run_with_tasks().where(runs.c.id.in_(bindparam("ids", expanding=True)))
_INSERT_RUN = runs.insert()
_LOCK_RUN = select(runs.c.id).where(runs.c.id == bindparam("b_run_id")).with_for_update()


async def load_run(conn: AsyncConnection, run_id: str, *, lock: bool) -> RunState:
    stmt = _RUN_BY_ID
    params = {"b_run_id": run_id}
    if lock and conn.dialect.name == "postgresql":
        # Lock the run row alone first, then read in a new statement: under READ COMMITTED
        # a locking join that waited re-reads only the locked row, so the tasks it returned
        # would predate the decision it waited for.
        if (await conn.execute(_LOCK_RUN, params)).first() is None:
            raise RunNotFound(run_id)
    elif lock:
        # MariaDB's locking reads see the newest committed rows of every joined table;
        # SQLite's writer is already exclusive.
        stmt = _RUN_BY_ID_FOR_UPDATE
    found = (await conn.execute(stmt, params)).all()
    if not found:
        raise RunNotFound(run_id)
    return rows_.run_from_rows(found)


async def _insert_run(conn: AsyncConnection, state: RunState, now: datetime) -> bool:
    """Insert the run row; False if its idempotency key is already taken."""
    values = rows_.run_values(state, now)
    if state.idempotency_key is None:
        await conn.execute(runs.insert(), values)
        return True
    dialect = conn.dialect.name
    if dialect in ("postgresql", "sqlite"):
        # ON CONFLICT waits for a concurrent insert of the same key to commit or roll
        # back, so two racing creates end with one run and one "already there".
        module = postgresql if dialect == "postgresql" else sqlite
        stmt = module.insert(runs).on_conflict_do_nothing(index_elements=["idempotency_key"])
        return (await conn.execute(stmt, values)).rowcount == 1
    try:  # MySQL: a duplicate key fails only the statement, inside a savepoint
        async with conn.begin_nested():
            await conn.execute(runs.insert(), values)
    except sa_exc.IntegrityError:
        return False
    return True


async def _load_run_by_key(conn: AsyncConnection, key: str | None) -> RunState:
    stmt = rows_.select_run_with_tasks().where(runs.c.idempotency_key == key)
    found = (await conn.execute(stmt)).all()
    if not found:  # the holder of the key was deleted between the conflict and this read
        raise StoreError("create_run", f"idempotency key {key!r} conflicted but has no run")
    return rows_.run_from_rows(found)
