"""Map item rows: loading the few a decision needs, writing the changed ones, paging them.

A map task's items are rows of `treadle_map_items` keyed (run_id, task_id, item_index).
A decision loads only what `ItemQuery` names (usually one or two rows: the event's item
and the next pending one; every row of one map, in index order, once, when the map may
finish or is retried), and writes back the items whose
state differs from what it loaded: new ones inserted, changed ones updated, each kind in
one executemany.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.domain.state import ItemQuery, MapItem, RunState
from treadle.ports import InflightAttempt
from treadle.store._rows import item_from_row, item_values
from treadle.store._tables import map_items

_KEY_BATCH = 500  # keys per OR-list, far below any database's parameter limit
_ACTIVE_ITEM = ("pending", "scheduled", "running")


async def load_items(conn: AsyncConnection, run_id: str, query: ItemQuery) -> list[MapItem]:
    """The items `query` names, each once, by task and index."""
    found: dict[tuple[str, int], MapItem] = {}
    if query.whole:
        stmt = (
            select(map_items)
            .where(map_items.c.run_id == run_id, map_items.c.task_id.in_(query.whole))
            .order_by(map_items.c.task_id, map_items.c.item_index)
        )
        for row in await conn.execute(stmt):
            item = item_from_row(row)
            found[(item.task_id, item.index)] = item
    keys = sorted({k for k in query.keys if k[0] not in query.whole})
    for start in range(0, len(keys), _KEY_BATCH):
        batch = keys[start : start + _KEY_BATCH]
        match = or_(
            *(and_(map_items.c.task_id == t, map_items.c.item_index == i) for t, i in batch)
        )
        stmt = select(map_items).where(map_items.c.run_id == run_id, match)
        for row in await conn.execute(stmt):
            item = item_from_row(row)
            found[(item.task_id, item.index)] = item
    for task_id, start, count in query.pending:
        if task_id in query.whole or count < 1:
            continue
        for row in await conn.execute(_select_pending(run_id, task_id, start, count)):
            item = item_from_row(row)
            found[(item.task_id, item.index)] = item
    return sorted(found.values(), key=lambda i: (i.task_id, i.index))


def _select_pending(run_id: str, task_id: str, start: int, count: int) -> Any:
    """The first `count` pending items of a map from index `start`, walking the primary key."""
    return (
        select(map_items)
        .where(
            map_items.c.run_id == run_id,
            map_items.c.task_id == task_id,
            map_items.c.item_index >= start,
            map_items.c.status == "pending",
        )
        .order_by(map_items.c.item_index)
        .limit(count)
    )


def item_rows(
    loaded: Sequence[MapItem], state: RunState
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of items new since `loaded` (to insert) and changed (to update, by key)."""
    before = {(i.task_id, i.index): i for i in loaded}
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for item in state.map_items:
        old = before.get((item.task_id, item.index))
        if old is None:
            new.append(item_values(state.id, item))
        elif old != item:
            row = item_values(state.id, item)
            key = {f"b_{k}": row.pop(k) for k in ("run_id", "task_id", "item_index")}
            changed.append({**row, **key})
    return new, changed


async def write_items(
    conn: AsyncConnection, new: Sequence[dict[str, Any]], changed: Sequence[dict[str, Any]]
) -> None:
    """Insert and update the item rows of `item_rows`, one executemany each."""
    if new:
        await conn.execute(insert(map_items), list(new))
    if changed:
        await conn.execute(UPDATE_ITEM, list(changed))


UPDATE_ITEM = update(map_items).where(
    map_items.c.run_id == bindparam("b_run_id"),
    map_items.c.task_id == bindparam("b_task_id"),
    map_items.c.item_index == bindparam("b_item_index"),
)


async def cancel_items(
    conn: AsyncConnection, run_id: str, task_ids: Sequence[str], now: datetime
) -> None:
    """Mark every unfinished item of these map tasks cancelled, in one statement each."""
    for task_id in dict.fromkeys(task_ids):
        stmt = (
            update(map_items)
            .where(
                map_items.c.run_id == run_id,
                map_items.c.task_id == task_id,
                map_items.c.status.in_(_ACTIVE_ITEM),
            )
            .values(status="cancelled", finished_at=now)
        )
        await conn.execute(stmt)


async def inflight_items(conn: AsyncConnection, run_ids: Sequence[str]) -> list[InflightAttempt]:
    """The dispatched attempts of map items in these runs (recovery re-dispatches them).

    An item waiting out a retry's backoff (`scheduled` with no `scheduled_at`) has no
    dispatch to lose: its timer sends it.
    """
    found: list[InflightAttempt] = []
    for start in range(0, len(run_ids), _KEY_BATCH):
        stmt = (
            select(
                map_items.c.run_id, map_items.c.task_id, map_items.c.item_index, map_items.c.attempt
            )
            .where(
                map_items.c.run_id.in_(run_ids[start : start + _KEY_BATCH]),
                map_items.c.status.in_(("scheduled", "running")),
                map_items.c.scheduled_at.is_not(None),
            )
            .order_by(map_items.c.run_id, map_items.c.task_id, map_items.c.item_index)
        )
        found += [
            InflightAttempt(
                run_id=r.run_id, task_id=r.task_id, attempt=r.attempt, item=r.item_index
            )
            for r in await conn.execute(stmt)
        ]
    return found


def select_item_page(
    run_id: str,
    task_id: str,
    limit: int,
    after: int | None,
    *,
    status: str | None = None,
    from_index: int | None = None,
) -> Any:
    """The items of one map task by index, `limit + 1` of them, after index `after` and
    from index `from_index`, only those in `status` when it is given."""
    stmt = (
        select(map_items)
        .where(map_items.c.run_id == run_id, map_items.c.task_id == task_id)
        .order_by(map_items.c.item_index)
        .limit(limit + 1)
    )
    if after is not None:
        stmt = stmt.where(map_items.c.item_index > after)
    if from_index is not None:
        stmt = stmt.where(map_items.c.item_index >= from_index)
    if status is not None:
        stmt = stmt.where(map_items.c.status == status)
    return stmt
