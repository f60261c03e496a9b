"""Writing decisions: the rows that changed, history, outbox and timers, in one transaction.

Round trips are kept to one statement per kind of write, each an executemany, and only
for the kinds the decisions actually touch; several decisions (on different runs) that
commit together share those statements.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Insert, bindparam, delete, insert, null, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.errors import TreadleError
from treadle.domain.events import CancelTimer, StartTimer
from treadle.domain.state import RunState
from treadle.ports import Changes, OutboxRecord
from treadle.store._map_items import cancel_items, item_rows, write_items
from treadle.store._rows import (
    history_values,
    mutable_run_values,
    outbox_values,
    tag_rows,
    task_values,
    timer_task_key,
)
from treadle.store._tables import history, outbox, run_tags, runs, tasks, timers


class DecisionMismatch(TreadleError):
    """A decision returned the state of another run than the one it was given."""

    def __init__(self, expected: str, got: str) -> None:
        self.expected = expected
        self.got = got
        super().__init__(f"decision for run {expected!r} returned state of run {got!r}")


class RunNotLocked(TreadleError):
    """A decision was written for a run its transaction does not hold locked."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(
            f"a decision returned state of run {run_id!r}, which its transaction does not lock"
        )


class DecisionWrites:
    """The writes of one or more decisions (on different runs), gathered by kind.

    `add` takes a decision's loaded state and its changes, `add_created` a run whose row
    the caller has just inserted; `flush` then writes every kind in one statement (an
    executemany over all the decisions), in the order a single decision would: run rows,
    tasks, map items, history, outbox, item cancels, timers.
    """

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._run_updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        self._new_tasks: list[dict[str, Any]] = []
        self._new_tags: list[dict[str, Any]] = []
        self._changed_tasks: list[dict[str, Any]] = []
        self._gone_tasks: list[dict[str, Any]] = []
        self._new_items: list[dict[str, Any]] = []
        self._changed_items: list[dict[str, Any]] = []
        self._history: list[dict[str, Any]] = []
        self._outbox: list[Changes] = []
        self._cancel_items: list[tuple[str, str]] = []
        self._cancel_timers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self._start_timers: dict[tuple[Any, ...], dict[str, Any]] = {}

    def add(self, loaded: RunState, changes: Changes) -> None:
        """Gather one decision on a stored run: what changed since `loaded`, and its effects."""
        self._add_state_changes(loaded, changes.state)
        self._add_effects(changes)

    def add_created(self, state: RunState, changes: Changes | None) -> None:
        """Gather a run just inserted, already in its decided state: all its tasks and map
        items are new, and its first decision's effects follow."""
        self._new_tasks += [task_values(state.id, i, t) for i, t in enumerate(state.tasks.values())]
        self._new_items += item_rows((), state)[0]
        self._new_tags += tag_rows(state)
        if changes is not None:
            self._add_effects(changes)
        else:
            self._outbox.append(Changes(state=state))  # its (empty) place in the records

    def _add_state_changes(self, loaded: RunState, state: RunState) -> None:
        if state.id != loaded.id:
            raise DecisionMismatch(loaded.id, state.id)
        values = _changed_run_values(loaded, state)
        if values:
            values["updated_at"] = self._now
            self._run_updates.setdefault(tuple(sorted(values)), []).append(
                {**values, "b_id": state.id}
            )
        self._add_task_changes(loaded, state)
        new_items, changed_items = item_rows(loaded.map_items, state)
        self._new_items += new_items
        self._changed_items += changed_items

    def _add_task_changes(self, loaded: RunState, state: RunState) -> None:
        for position, (task_id, task) in enumerate(state.tasks.items()):
            before = loaded.tasks.get(task_id)
            if before is None:
                self._new_tasks.append(task_values(state.id, position, task))
            elif before is not task and before != task:
                row = task_values(state.id, position, task)
                key = {"b_run_id": row.pop("run_id"), "b_task_id": row.pop("task_id")}
                self._changed_tasks.append({**row, **key})
        self._gone_tasks += [
            {"b_run_id": state.id, "b_task_id": t} for t in loaded.tasks if t not in state.tasks
        ]

    def _add_effects(self, changes: Changes) -> None:
        run_id = changes.state.id
        self._history += [history_values(run_id, h) for h in changes.history]
        self._outbox.append(changes)
        self._cancel_items += [(run_id, t) for t in dict.fromkeys(changes.cancel_items)]
        for cancel in changes.cancel_timers:
            key = _timer_key(cancel)
            self._cancel_timers[tuple(key.values())] = {f"b_{k}": v for k, v in key.items()}
        # The same identity twice in one decision: the last one wins, as it would in order.
        fields = {"leased_until": None, "traceparent": changes.traceparent}
        for start in changes.start_timers:
            key = _timer_key(start)
            self._start_timers[tuple(key.values())] = {**key, "fire_at": start.fire_at, **fields}

    async def flush(self, conn: AsyncConnection) -> list[list[OutboxRecord]]:
        """Write everything gathered; the outbox records of each decision, in `add` order."""
        for rows in self._run_updates.values():
            await conn.execute(_UPDATE_RUN, rows)
        if self._new_tasks:
            await conn.execute(insert(tasks), self._new_tasks)
        if self._new_tags:
            await conn.execute(insert(run_tags), self._new_tags)
        if self._changed_tasks:
            await conn.execute(_UPDATE_TASK, self._changed_tasks)
        if self._gone_tasks:
            await conn.execute(_DELETE_TASK, self._gone_tasks)
        await write_items(conn, self._new_items, self._changed_items)
        if self._history:
            await conn.execute(insert(history), self._history)
        records = await _insert_outbox(conn, self._outbox, self._now)
        for run_id, task_id in self._cancel_items:
            await cancel_items(conn, run_id, [task_id], self._now)
        if self._cancel_timers:
            await conn.execute(_DELETE_TIMER, list(self._cancel_timers.values()))
        if self._start_timers:
            upsert = upsert_timer(conn.dialect.name)
            await conn.execute(upsert, list(self._start_timers.values()))
        return records


def _changed_run_values(loaded: RunState, state: RunState) -> dict[str, Any]:
    """The run row's columns this decision changed (none when only its tasks changed: the
    lock taken to load it already orders the decision, and `updated_at` is the row's own)."""
    if all(getattr(loaded, f) is getattr(state, f) for f in _RUN_FIELDS):
        return {}  # the decider keeps the very objects it did not change
    before = mutable_run_values(loaded)
    return {k: v for k, v in mutable_run_values(state).items() if before[k] != v}


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
_UPDATE_RUN = update(runs).where(runs.c.id == bindparam("b_id"))
_TASK_KEY = (tasks.c.run_id == bindparam("b_run_id"), tasks.c.task_id == bindparam("b_task_id"))
_UPDATE_TASK = update(tasks).where(*_TASK_KEY)
_DELETE_TASK = delete(tasks).where(*_TASK_KEY)


async def _insert_outbox(
    conn: AsyncConnection, decisions: Sequence[Changes], now: datetime
) -> list[list[OutboxRecord]]:
    messages = [o for changes in decisions for o in changes.outbox]
    ids: list[int] = []
    if messages:
        rows = [outbox_values(o.channel, o.message, now, o.lease_seconds) for o in messages]
        if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            ids = list((await conn.execute(_INSERT_OUTBOX_RETURNING_IDS, rows)).scalars())
        else:  # MySQL proper has no RETURNING: one insert per row, reading its key
            ids = [await _insert_one(conn, row) for row in rows]
    records = iter(
        OutboxRecord(id=i, channel=o.channel, message=o.message, leased=o.lease_seconds is not None)
        for i, o in zip(ids, messages, strict=True)
    )
    return [[next(records) for _ in changes.outbox] for changes in decisions]


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


_DELETE_TIMER = delete(timers).where(
    timers.c.run_id == bindparam("b_run_id"),
    timers.c.kind == bindparam("b_kind"),
    timers.c.task_id == bindparam("b_task_id"),
    timers.c.attempt == bindparam("b_attempt"),
)


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
