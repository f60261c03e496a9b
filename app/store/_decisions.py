"""Writing one decision: the rows that changed, history, outbox and timers, in one transaction.

Round trips are kept to one statement per kind of write, each an executemany, and only
for the kinds a decision actually touches.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, bindparam, delete, insert, null, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from app.domain.errors import TreadleError
from app.domain.events import CancelTimer, StartTimer
from app.domain.state import RunState
from app.ports import Changes, OutboxRecord
from app.store._map_items import cancel_items, write_items
from app.store._rows import (
    history_values,
    mutable_run_values,
    outbox_values,
    task_values,
    timer_task_key,
)
from app.store._tables import history, outbox, runs, tasks, timers


class DecisionMismatch(TreadleError):
    """A decision returned the state of another run than the one it was given."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"decision for run {expected!r} returned state of run {got!r}")


async def write_new_tasks(conn: AsyncConnection, state: RunState) -> None:
    """Insert every task of a run whose row was just inserted."""
    rows = [task_values(state.id, i, t) for i, t in enumerate(state.tasks.values())]
    if rows:
        await conn.execute(insert(tasks), rows)
    await write_items(conn, (), state)  # a map that started with the run


async def write_changes(
    conn: AsyncConnection, loaded: RunState, changes: Changes, now: datetime
) -> None:
    """Update the run row, and the tasks and map items that differ from `loaded`."""
    state = changes.state
    if state.id != loaded.id:
        raise DecisionMismatch(loaded.id, state.id)
    await _update_run(conn, loaded, state, now)
    await _write_tasks(conn, loaded, state)
    await write_items(conn, loaded.map_items, state)


async def write_effects(
    conn: AsyncConnection, changes: Changes, now: datetime
) -> list[OutboxRecord]:
    """Append history, enqueue the outbox, set and cancel timers; the outbox records."""
    run_id = changes.state.id
    if changes.history:
        await conn.execute(insert(history), [history_values(run_id, h) for h in changes.history])
    records = await _insert_outbox(conn, changes, now)
    await cancel_items(conn, run_id, changes.cancel_items, now)
    await _cancel_timers(conn, changes.cancel_timers)
    await _start_timers(conn, changes.start_timers, changes.traceparent)
    return records


async def _update_run(
    conn: AsyncConnection, loaded: RunState, state: RunState, now: datetime
) -> None:
    if all(getattr(loaded, f) is getattr(state, f) for f in _RUN_FIELDS):
        values = {}  # the decider keeps the very objects it did not change
    else:
        before = mutable_run_values(loaded)
        values = {k: v for k, v in mutable_run_values(state).items() if before[k] != v}
    if not values:
        # Only its tasks changed: the lock taken to load it already orders this decision,
        # and skipping the write spares a round trip (`updated_at` is the row's own).
        return
    stmt = update(runs).where(runs.c.id == state.id).values(**values, updated_at=now)
    await conn.execute(stmt)


_RUN_FIELDS = (
    "status",
    "input",
    "output",
    "error",
    "started_at",
    "finished_at",
    "signals",
    "paused",
)


async def _write_tasks(conn: AsyncConnection, loaded: RunState, state: RunState) -> None:
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for position, (task_id, task) in enumerate(state.tasks.items()):
        before = loaded.tasks.get(task_id)
        if before is None:
            new.append(task_values(state.id, position, task))
        elif before is not task and before != task:
            row = task_values(state.id, position, task)
            changed.append({**row, "b_run_id": row.pop("run_id"), "b_task_id": row.pop("task_id")})
    gone = [{"b_run_id": state.id, "b_task_id": t} for t in loaded.tasks if t not in state.tasks]
    if new:
        await conn.execute(insert(tasks), new)
    if changed:
        await conn.execute(_UPDATE_TASK, changed)
    if gone:
        await conn.execute(_DELETE_TASK, gone)


_TASK_KEY = (tasks.c.run_id == bindparam("b_run_id"), tasks.c.task_id == bindparam("b_task_id"))
_UPDATE_TASK = update(tasks).where(*_TASK_KEY)
_DELETE_TASK = delete(tasks).where(*_TASK_KEY)


async def _insert_outbox(
    conn: AsyncConnection, changes: Changes, now: datetime
) -> list[OutboxRecord]:
    if not changes.outbox:
        return []
    rows = [outbox_values(o.channel, o.message, now) for o in changes.outbox]
    if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
        ids = list((await conn.execute(_INSERT_OUTBOX_RETURNING_IDS, rows)).scalars())
    else:  # MySQL proper has no RETURNING: one insert per row, reading its key
        ids = [await _insert_one(conn, row) for row in rows]
    return [
        OutboxRecord(id=i, channel=o.channel, message=o.message)
        for i, o in zip(ids, changes.outbox, strict=True)
    ]


_INSERT_OUTBOX_RETURNING_IDS = insert(outbox).returning(outbox.c.id, sort_by_parameter_order=True)


async def _insert_one(conn: AsyncConnection, row: dict[str, Any]) -> int:
    result = await conn.execute(insert(outbox), row)
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported driver reports the new key
        raise RuntimeError("the database did not report the new outbox row's id")
    return int(key[0])


def _timer_key(timer: StartTimer | CancelTimer) -> dict[str, Any]:
    return {
        "run_id": timer.run_id,
        "kind": timer.kind.value,
        "task_id": timer_task_key(timer.task_id, timer.item),
        "attempt": timer.attempt,
    }


async def _cancel_timers(conn: AsyncConnection, cancels: Sequence[CancelTimer]) -> None:
    if not cancels:
        return
    keys = {tuple(k.values()): k for k in map(_timer_key, cancels)}
    params = [{f"b_{name}": value for name, value in k.items()} for k in keys.values()]
    await conn.execute(_DELETE_TIMER, params)


_DELETE_TIMER = delete(timers).where(
    timers.c.run_id == bindparam("b_run_id"),
    timers.c.kind == bindparam("b_kind"),
    timers.c.task_id == bindparam("b_task_id"),
    timers.c.attempt == bindparam("b_attempt"),
)


async def _start_timers(
    conn: AsyncConnection, starts: Sequence[StartTimer], traceparent: str | None
) -> None:
    if not starts:
        return
    # The same identity twice in one decision: the last one wins, as it would in order.
    fields = {"leased_until": None, "traceparent": traceparent}
    rows = {
        tuple(k.values()): {**k, "fire_at": t.fire_at, **fields}
        for t in starts
        for k in [_timer_key(t)]
    }
    await conn.execute(upsert_timer(conn.dialect.name), list(rows.values()))


@functools.cache  # built once per dialect: constructing it costs more than running it
def upsert_timer(dialect: str) -> Insert:
    """INSERT of a timer row that replaces `fire_at` (and drops any lease) if it exists."""
    if dialect in ("mysql", "mariadb"):
        my = mysql.insert(timers)
        # A literal NULL: asyncmy's executemany cannot bind parameters after VALUES (...).
        return my.on_duplicate_key_update(
            fire_at=my.inserted.fire_at, leased_until=null(), traceparent=my.inserted.traceparent
        )
    pg_or_lite = postgresql.insert(timers) if dialect == "postgresql" else sqlite.insert(timers)
    return pg_or_lite.on_conflict_do_update(
        index_elements=[timers.c.run_id, timers.c.kind, timers.c.task_id, timers.c.attempt],
        set_={
            "fire_at": pg_or_lite.excluded.fire_at,
            "leased_until": null(),
            "traceparent": pg_or_lite.excluded.traceparent,
        },
    )
