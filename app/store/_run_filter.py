"""A `RunFilter` as SQL: the WHERE clauses of runs, and the runs select that pages by it.

Shared by every query that picks runs by a filter (lists, counts, bulk operations), so
they all agree on what a filter matches.
"""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import Select, and_, exists, select, tuple_

from treadle.ports import RunFilter
from treadle.store._tables import run_tags, runs


def run_clauses(where: RunFilter) -> list[Any]:
    """The WHERE clauses on `runs` that keep the runs `where` matches."""
    clauses: list[Any] = []
    if where.workflow is not None:
        clauses.append(runs.c.workflow == where.workflow)
    if where.status is not None:
        clauses.append(runs.c.status == where.status)
    if where.idempotency_key is not None:
        clauses.append(runs.c.idempotency_key == where.idempotency_key)
    if where.created_after is not None:
        clauses.append(runs.c.created_at >= where.created_after)
    if where.created_before is not None:
        clauses.append(runs.c.created_at < where.created_before)
    clauses += [_has_tag(key, value) for key, value in where.tags.items()]
    return clauses


def _has_tag(key: str, value: str) -> Any:
    tag = run_tags.alias()  # the outer query may walk `run_tags` itself
    return exists().where(tag.c.run_id == runs.c.id, tag.c.key == key, tag.c.value == value)


def select_runs_newest_first(
    columns: list[Any], where: RunFilter, after: tuple[Any, Any] | None
) -> Select[Any]:
    """`columns` of the runs `where` matches, newest first, after the keyset `after`.

    With a tag, the walk is led by the tags index (key, value, created_at, run_id), so
    a page of a rare tag costs its own rows, not a scan of every newer run.
    """
    if not where.tags:
        stmt = select(*columns).where(*run_clauses(where))
        order = (runs.c.created_at, runs.c.id)
    else:
        (key, value), *_ = where.tags.items()
        joined = run_tags.join(runs, runs.c.id == run_tags.c.run_id)
        lead = and_(run_tags.c.key == key, run_tags.c.value == value)
        rest = msgspec.structs.replace(
            where, tags={k: v for k, v in where.tags.items() if k != key}
        )
        stmt = select(*columns).select_from(joined).where(lead, *run_clauses(rest))
        order = (run_tags.c.created_at, run_tags.c.run_id)
    if after is not None:
        stmt = stmt.where(tuple_(*order) < tuple_(*after))
    return stmt.order_by(order[0].desc(), order[1].desc())
