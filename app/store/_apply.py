"""The decision methods of `SqlStore`: creating runs and applying decisions to them.

A decision locks its run, reads its state (or reuses the state this process committed
last, see `_states`), calls the pure `decide`, and writes what changed, all in one
transaction. Where the database has UPDATE ... RETURNING (PostgreSQL, SQLite), decisions
on different runs that wait at the same time commit together (`_group`): one lock
statement, one read of the states not kept, and one statement per kind of write for the
whole group. MySQL decides one run per transaction.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import Row, bindparam, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.errors import RunNotFound
from treadle.domain.state import RunState
from treadle.ports import Applied, Changes, Decide, ItemsWanted
from treadle.store import _rows as rows_
from treadle.store._database import Database
from treadle.store._decisions import DecisionWrites
from treadle.store._errors import StoreError, mapped_errors
from treadle.store._group import GroupCommitter, GroupRequest, together_or_alone
from treadle.store._map_items import load_items
from treadle.store._states import KeptStates
from treadle.store._tables import runs

_NewRun = tuple[RunState, Changes | None]
"""A run to insert, already decided, and what its first decision wrote."""

GROUP_MAX_SIZE = 64
"""Decisions in one group transaction at most."""
GROUP_LEADERS = 1
"""Group transactions in flight at once per store. One: SQLite has a single writer anyway,
and on PostgreSQL the decisions that arrive while a group commits make the next group
larger, which costs less CPU per step than committing them in parallel (chain10 on
pg-memory, 300 runs: about 295 steps/s with one, 240 with three)."""


class DecisionQueries:
    """Decision methods of `SqlStore`; it provides `_db`, `_now` and `_kept`, and calls
    `_init_groups` once."""

    _db: Database
    _now: Callable[[], datetime]
    _kept: KeptStates
    _groups: GroupCommitter[Decide] | None
    _creates: GroupCommitter[_NewRun] | None

    def _init_groups(self) -> None:
        if self._db.dialect not in ("postgresql", "sqlite"):
            self._groups = self._creates = None
            return
        self._groups = GroupCommitter(
            self._commit_group, leaders=GROUP_LEADERS, max_size=GROUP_MAX_SIZE
        )
        self._creates = GroupCommitter(
            self._commit_creates, leaders=GROUP_LEADERS, max_size=GROUP_MAX_SIZE
        )

    async def create_run(self, run: RunState, decide: Decide) -> tuple[Applied, bool]:
        """Insert the run and apply `decide` to it in one transaction.

        `decide` is pure, so it runs before the insert and the run row is written once,
        already in its decided state. A taken idempotency key writes nothing and returns
        the run that holds it, with `created` False.
        """
        changes = decide(run)
        state = changes.state if changes is not None else run
        if state.idempotency_key is None and self._creates is not None:
            # Without a key nothing can conflict: created runs commit in groups too.
            applied = await self._creates.submit(state.id, (state, changes))
            assert isinstance(applied, Applied)
            return applied, True
        return await self._create_alone(state, changes)

    async def _create_alone(self, state: RunState, changes: Changes | None) -> tuple[Applied, bool]:
        with mapped_errors("create_run"):
            async with self._db.transaction(write=True) as conn:
                now = self._now()
                if not await _insert_run(conn, state, now):
                    existing = await _load_run_by_key(conn, state.idempotency_key)
                    return Applied(state=existing, outbox=[]), False
                writes = DecisionWrites(now)
                writes.add_created(state, changes)
                (records,) = await writes.flush(conn)
        self._kept.keep(0, state)  # a new run row starts at revision 0
        return Applied(state=state, outbox=records), True

    async def _commit_creates(self, group: Sequence[GroupRequest[_NewRun]]) -> None:
        """Insert `group`'s runs in one transaction; alone, one by one, if that fails."""

        async def alone(request: GroupRequest[_NewRun]) -> Applied:
            return (await self._create_alone(*request.payload))[0]

        await together_or_alone(group, self._create_group, alone)

    async def _create_group(self, group: Sequence[GroupRequest[_NewRun]]) -> None:
        states = [state for state, _ in (r.payload for r in group)]
        with mapped_errors("create_run"):
            async with self._db.transaction(write=True) as conn:
                now = self._now()
                await conn.execute(_INSERT_RUN, [rows_.run_values(s, now) for s in states])
                writes = DecisionWrites(now)
                for state, changes in (r.payload for r in group):
                    writes.add_created(state, changes)
                records = await writes.flush(conn)
        for request, outbox in zip(group, records, strict=True):
            state = request.payload[0]
            self._kept.keep(0, state)
            request.succeed(Applied(state=state, outbox=outbox))

    async def apply(
        self, run_id: str, decide: Decide, *, items: ItemsWanted | None = None
    ) -> Applied | None:
        """Lock the run, call `decide` on its state, persist; None if nothing changed.

        `items` names the map items to load into the state `decide` sees (after the lock).
        `decide` may be called more than once (a group that failed is decided again alone).
        """
        if items is None and self._groups is not None:
            result = await self._groups.submit(run_id, decide)
            assert result is None or isinstance(result, Applied)
            return result
        return await self._apply_alone(run_id, decide, items)

    async def _apply_alone(
        self, run_id: str, decide: Decide, items: ItemsWanted | None
    ) -> Applied | None:
        revision: int | None = None
        try:
            with mapped_errors("apply"):
                async with self._db.transaction(write=True) as conn:
                    revision, loaded = await self._lock_and_load(conn, run_id)
                    if items is not None:
                        found = await load_items(conn, run_id, items(loaded))
                        loaded = msgspec.structs.replace(loaded, map_items=found)
                    changes = decide(loaded)
                    if changes is not None:
                        writes = DecisionWrites(self._now())
                        writes.add(loaded, changes)
                        (records,) = await writes.flush(conn)
        except BaseException:
            self._kept.forget(run_id)
            raise
        if revision is not None:
            self._kept.keep(revision, changes.state if changes is not None else loaded)
        if changes is None:
            return None
        return Applied(state=changes.state, outbox=records)

    async def _lock_and_load(
        self, conn: AsyncConnection, run_id: str
    ) -> tuple[int | None, RunState]:
        """Lock the run; (its new revision, its state), the state kept here if current.

        Where UPDATE ... RETURNING exists, locking is incrementing the revision; without
        it (MySQL) the run is locked by a locking read and nothing is kept.
        """
        if not conn.dialect.update_returning:
            return None, await load_run(conn, run_id, lock=True)
        revision = (await conn.execute(_BUMP_REVISION, {"b_run_id": run_id})).scalar()
        if revision is None:
            raise RunNotFound(run_id)
        kept = self._kept.at(run_id, revision - 1)
        if kept is not None:
            return revision, kept
        # Read in a new statement, after the lock (see `load_run`).
        return revision, await load_run(conn, run_id, lock=False)

    # --- group commit ------------------------------------------------------------------

    async def _commit_group(self, group: Sequence[GroupRequest[Decide]]) -> None:
        """Decide and commit `group` in one transaction; alone, one by one, if that fails."""

        async def alone(request: GroupRequest[Decide]) -> Applied | None:
            return await self._apply_alone(request.run_id, request.payload, None)

        await together_or_alone(group, self._decide_group, alone)

    async def _decide_group(self, group: Sequence[GroupRequest[Decide]]) -> None:
        decided: list[tuple[GroupRequest[Decide], int, RunState, Changes | None]] = []
        try:
            with mapped_errors("apply"):
                async with self._db.transaction(write=True) as conn:
                    loaded = await self._lock_and_load_many(conn, [r.run_id for r in group])
                    writes = DecisionWrites(self._now())
                    for request in group:
                        if request.run_id not in loaded:
                            continue
                        revision, state = loaded[request.run_id]
                        changes = request.payload(state)
                        if changes is not None:
                            writes.add(state, changes)
                        decided.append((request, revision, state, changes))
                    records = iter(await writes.flush(conn))
        except BaseException:
            for request in group:
                self._kept.forget(request.run_id)
            raise
        for request, revision, state, changes in decided:
            if changes is None:
                self._kept.keep(revision, state)
                request.succeed(None)
            else:
                self._kept.keep(revision, changes.state)
                request.succeed(Applied(state=changes.state, outbox=next(records)))
        for request in group:
            if request.run_id not in loaded:
                request.fail(RunNotFound(request.run_id))

    async def _lock_and_load_many(
        self, conn: AsyncConnection, run_ids: Sequence[str]
    ) -> dict[str, tuple[int, RunState]]:
        """Lock these runs (in id order, so two groups never deadlock); each found one's
        new revision and state, the state kept here where it is current."""
        ordered = sorted(set(run_ids))
        result = await conn.execute(_bump_revisions(conn.dialect.name), {"ids": ordered})
        bumped: dict[str, int] = {row[0]: row[1] for row in result}
        found: dict[str, tuple[int, RunState]] = {}
        unknown: list[str] = []
        for run_id, revision in bumped.items():
            kept = self._kept.at(run_id, revision - 1)
            if kept is None:
                unknown.append(run_id)
            else:
                found[run_id] = (revision, kept)
        if unknown:
            rows = (await conn.execute(_RUNS_BY_IDS, {"ids": unknown})).all()
            for run_id, state in _states_of(rows).items():
                found[run_id] = (bumped[run_id], state)
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
_BUMP_REVISION = (
    update(runs)
    .where(runs.c.id == bindparam("b_run_id"))
    .values(revision=runs.c.revision + 1)
    .returning(runs.c.revision)
)


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
