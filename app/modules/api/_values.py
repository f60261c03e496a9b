"""Large values out of a run's JSON: `{"$elided": {bytes, href}}`, and the route behind `href`.

A run or task input or output (a map item's too, on the items page) larger than
`limits.max_inline_value_bytes` as JSON is replaced by its size and the path of
`GET /v1/runs/{run_id}/values/<path>`, which answers that one value. The paths are
`input`, `output`, `error`, `tasks/<task>/<field>` and `tasks/<task>[<index>]/<field>`
(task ids keep to [A-Za-z0-9_.-], so the brackets and slashes are never ambiguous).
An error over the bound keeps its typed shape (clients decode it): its message and
traceback are cut, and the message ends naming the size and the path of the whole error.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import msgspec

from treadle.api_types import elided_marker
from treadle.domain.state import ErrorInfo, RunState
from treadle.modules.api._errors import InvalidParameter
from treadle.modules.api._schemas import MapItemPage, RunBody, TaskBody
from treadle.ports import OmittedValue, RunStore

FIELDS = ("input", "output", "error")
INLINE_ALL = "all"
_ITEM_PATH = re.compile(r"(?P<task>[A-Za-z0-9_.-]+)(?:\[(?P<index>[0-9]{1,10})\])?")
_MAX_INDEX = 2**31 - 1  # the store's INTEGER column
_encoder = msgspec.json.Encoder()


class ValuePath(msgspec.Struct, frozen=True, kw_only=True):
    """Which value a path names: the run's (no task), a task's, or a map item's."""

    field: str
    task_id: str | None = None
    item: int | None = None


# --- paths ------------------------------------------------------------------------------


def parse_value_path(path: str) -> ValuePath:
    """The value `path` names; raises `InvalidParameter` (400) for a path naming none."""
    parts = path.removeprefix("/").split("/")
    if len(parts) == 1 and parts[0] in FIELDS:
        return ValuePath(field=parts[0])
    if len(parts) == 3 and parts[0] == "tasks" and parts[2] in FIELDS:
        found = _ITEM_PATH.fullmatch(parts[1])
        index = found and found["index"]
        if found and (index is None or int(index) <= _MAX_INDEX):
            item = None if index is None else int(index)
            return ValuePath(field=parts[2], task_id=found["task"], item=item)
    raise InvalidParameter(
        "path",
        "must be input, output, error, tasks/<task>/input, tasks/<task>/output, "
        f"tasks/<task>/error, or tasks/<task>[<index>]/... for a map item; got {path!r}",
    )


def value_href(run_id: str, path: ValuePath) -> str:
    """The URL path that answers this value (brackets percent-encoded)."""
    base = f"/v1/runs/{quote(run_id, safe='')}/values"
    if path.task_id is None:
        return f"{base}/{path.field}"
    task = path.task_id if path.item is None else f"{path.task_id}[{path.item}]"
    return f"{base}/tasks/{quote(task, safe='')}/{path.field}"


# --- eliding ------------------------------------------------------------------------------


def inline_bound(most: int, inline: str | None) -> int | None:
    """The bound a read keeps to: None (everything inline) for `?inline=all`."""
    if inline is None:
        return most
    if inline == INLINE_ALL:
        return None
    raise InvalidParameter("inline", f"must be {INLINE_ALL!r} (every value inline); got {inline!r}")


def shown(value: Any, href: Callable[[], str], most: int | None) -> Any:
    """`value` itself, or `{"$elided": {bytes, href}}` when its JSON is over `most` bytes."""
    if isinstance(value, OmittedValue):  # the store measured it and left it there
        return elided_marker(value.size, href())
    if most is None or value is None or isinstance(value, bool | int | float):
        return value
    size = len(_encoder.encode(value))
    return elided_marker(size, href()) if size > most else value


def shown_error(error: ErrorInfo | None, href: Callable[[], str], most: int | None) -> Any:
    """The error itself, or when its JSON is over `most` bytes the same error with its
    message and traceback cut to fit, the message naming the whole error's size and href."""
    if error is None or most is None:
        return error
    size = len(_encoder.encode(error))
    if size <= most:
        return error
    keep = max(most // 4, 80)
    note = f" … [error elided: {size:,} bytes as JSON; GET {href()}]"
    traceback = error.traceback
    return msgspec.structs.replace(
        error,
        message=error.message[:keep] + note,
        traceback=None if traceback is None else "…" + traceback[-keep:],
    )


def elide_run(body: RunBody, most: int | None) -> RunBody:
    """The run body with every input, output and error over `most` bytes elided."""

    def href(task_id: str | None, field: str) -> Callable[[], str]:
        return lambda: value_href(body.id, ValuePath(field=field, task_id=task_id))

    def task(t: TaskBody) -> TaskBody:
        return msgspec.structs.replace(
            t,
            input=shown(t.input, href(t.task_id, "input"), most),
            output=shown(t.output, href(t.task_id, "output"), most),
            error=shown_error(t.error, href(t.task_id, "error"), most),
        )

    return msgspec.structs.replace(
        body,
        input=shown(body.input, href(None, "input"), most),
        output=shown(body.output, href(None, "output"), most),
        error=shown_error(body.error, href(None, "error"), most),
        tasks=[task(t) for t in body.tasks],
    )


def elide_items(run_id: str, task_id: str, page: MapItemPage, most: int | None) -> MapItemPage:
    """The items page with every item input, output and error over `most` bytes elided."""

    def href(index: int, field: str) -> Callable[[], str]:
        return lambda: value_href(run_id, ValuePath(field=field, task_id=task_id, item=index))

    items = [
        msgspec.structs.replace(
            i,
            input=shown(i.input, href(i.index, "input"), most),
            output=shown(i.output, href(i.index, "output"), most),
            error=shown_error(i.error, href(i.index, "error"), most),
        )
        for i in page.items
    ]
    return msgspec.structs.replace(page, items=items)


# --- reading ------------------------------------------------------------------------------


def run_reader(runs: RunStore, most: int | None) -> Callable[[str], Awaitable[RunState]]:
    """How to read a run for an answer bounded by `most`: the store's bounded read, which
    leaves large values in the database."""
    if most is None:
        return runs.get_run
    return lambda run_id: runs.get_run_bounded(run_id, most)


async def read_value(runs: RunStore, run_id: str, path: ValuePath) -> bytes:
    """The JSON of one value; raises `RunNotFound`, `TaskNotFound`."""
    text = await runs.get_value(run_id, path.task_id, path.item, path.field)
    return b"null" if text is None else text.encode()
