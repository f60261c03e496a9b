"""Reads that leave a run's large values in the database (`RunValueStore`).

A bounded read asks the database for each value's byte length and fetches only the values
under the bound, so a run with a 50 MB task output costs its small values only: the large
one never crosses the connection, is never decoded, and the API answers its size instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from sqlalchemy import ColumnElement, Integer, Row, Select, bindparam, case, null, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from treadle.domain.errors import RunNotFound, TaskNotFound
from treadle.domain.state import MapItem, RunState, TaskState
from treadle.ports import OmittedValue
from treadle.store._rows import item_from_row, run_from_rows
from treadle.store._tables import map_items, runs, tasks

VALUE_FIELDS = ("input", "output")
"""The columns a bounded read measures and leaves out when large."""
READABLE_FIELDS = (*VALUE_FIELDS, "error")
"""The columns `load_value` answers (the API shortens a large error rather than elide it)."""


class json_bytes(FunctionElement[int]):  # noqa: N801 -- an SQL function, named like one
    """The byte length of a JSON text column, on each database."""

    type = Integer()
    inherit_cache = True
    name = "json_bytes"


@compiles(json_bytes)
def _octet_length(element: json_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"octet_length({compiler.process(element.clauses, **kw)})"


@compiles(json_bytes, "sqlite")
def _sqlite_length(element: json_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    # length() of TEXT counts characters; of a BLOB, bytes.
    return f"length(CAST({compiler.process(element.clauses, **kw)} AS BLOB))"


@compiles(json_bytes, "mysql")
@compiles(json_bytes, "mariadb")
def _mysql_length(element: json_bytes, compiler: SQLCompiler, **kw: Any) -> str:
    return f"length({compiler.process(element.clauses, **kw)})"


def _bounded(column: Any, label: str) -> list[ColumnElement[Any]]:
    """The column when its JSON fits under `most`, else NULL; and its byte length."""
    size = json_bytes(column)
    kept = case((size <= bindparam("most", type_=Integer()), column), else_=null())
    return [kept.label(label), size.label(f"{label}_bytes")]


def _select_bounded_run() -> Select[Any]:
    run_columns = [c for c in runs.c if c.name not in VALUE_FIELDS]
    task_columns = [c.label(f"t_{c.name}") for c in tasks.c if c.name not in VALUE_FIELDS]
    task_columns = [c for c in task_columns if c.name != "t_run_id"]
    values = [part for f in VALUE_FIELDS for part in _bounded(runs.c[f], f)]
    values += [part for f in VALUE_FIELDS for part in _bounded(tasks.c[f], f"t_{f}")]
    joined = runs.outerjoin(tasks, tasks.c.run_id == runs.c.id)
    return (
        select(*run_columns, *task_columns, *values)
        .select_from(joined)
        .where(runs.c.id == bindparam("b_run_id"))
        .order_by(tasks.c.position)
    )


_BOUNDED_RUN = _select_bounded_run()


async def load_bounded_run(conn: AsyncConnection, run_id: str, most: int) -> RunState:
    """The run, each input and output over `most` bytes an `OmittedValue`."""
    found = (await conn.execute(_BOUNDED_RUN, {"b_run_id": run_id, "most": most})).all()
    if not found:
        raise RunNotFound(run_id)
    run = run_from_rows(found)
    omitted = _omitted(found[0]._mapping, "", most)
    by_id = {r._mapping["t_task_id"]: r._mapping for r in found if r._mapping["t_task_id"]}
    task_list = [_with_omitted(t, by_id[t.task_id], most) for t in run.tasks.values()]
    return msgspec.structs.replace(run, **omitted, tasks={t.task_id: t for t in task_list})


def _omitted(row: Any, prefix: str, most: int) -> dict[str, OmittedValue]:
    """The fields of this row the query left out, as `OmittedValue`s."""
    sizes = {f: row[f"{prefix}{f}_bytes"] for f in VALUE_FIELDS}
    return {f: OmittedValue(size=n) for f, n in sizes.items() if n is not None and n > most}


def _with_omitted(task: TaskState, row: Any, most: int) -> TaskState:
    omitted = _omitted(row, "t_", most)
    return msgspec.structs.replace(task, **omitted) if omitted else task


def bounded_items(
    stmt: Select[Any], most: int
) -> tuple[Select[Any], Callable[[Row[Any]], MapItem]]:
    """A map items query (`select_item_page`) that leaves inputs and outputs over `most`
    bytes in the database, and the conversion of its rows (those as `OmittedValue`s)."""
    values = [part for f in VALUE_FIELDS for part in _bounded(map_items.c[f], f)]
    kept = [c for c in map_items.c if c.name not in VALUE_FIELDS]
    bounded = stmt.with_only_columns(*kept, *values).params(most=most)

    def convert(row: Row[Any]) -> MapItem:
        item = item_from_row(row)
        omitted = _omitted(row._mapping, "", most)
        return msgspec.structs.replace(item, **omitted) if omitted else item

    return bounded, convert


# --- one value ------------------------------------------------------------------------


async def load_value(
    conn: AsyncConnection, run_id: str, task_id: str | None, item: int | None, field: str
) -> str | None:
    """The stored JSON text of one value; raises `RunNotFound`, `TaskNotFound`."""
    if field not in READABLE_FIELDS:
        raise ValueError(f"no value field {field!r}")  # the API checked; a caller's bug
    if task_id is None:
        stmt = select(runs.c[field]).where(runs.c.id == run_id)
    elif item is None:
        stmt = select(tasks.c[field]).where(tasks.c.run_id == run_id, tasks.c.task_id == task_id)
    else:
        stmt = select(map_items.c[field]).where(
            map_items.c.run_id == run_id,
            map_items.c.task_id == task_id,
            map_items.c.item_index == item,
        )
    found: Sequence[Row[Any]] = (await conn.execute(stmt)).all()
    if not found:
        await _raise_missing(conn, run_id, task_id, item)
    value: str | None = found[0][0]
    return value


async def _raise_missing(
    conn: AsyncConnection, run_id: str, task_id: str | None, item: int | None
) -> None:
    if (await conn.execute(select(runs.c.id).where(runs.c.id == run_id))).first() is None:
        raise RunNotFound(run_id)
    if task_id is None:  # pragma: no cover - a run row always has its value columns
        raise RunNotFound(run_id)
    if item is None:
        raise TaskNotFound(run_id, task_id)
    raise TaskNotFound(run_id, f"{task_id}[{item}]", "map item")
