"""Translation between table rows and the port's Structs, and opaque cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from sqlalchemy import Row, Select, select

from treadle.domain.errors import InvalidCursor
from treadle.domain.events import HistoryEntry, TimerKind
from treadle.domain.state import (
    ErrorInfo,
    Heartbeat,
    MapItem,
    MapProgress,
    RunState,
    RunStatus,
    TaskState,
    TaskStatus,
)
from treadle.messages import Message, delivered_once_more
from treadle.ports import DueTimer, MapItemRecord, OutboxRecord, RunSummary, StoredWorkflow
from treadle.store._tables import history, outbox, runs, tasks, timers, workflows
from treadle.store._types import as_utc, decode_json, encode_json

Signals = dict[str, list[Any]]
Headers = dict[str, str]
Tags = dict[str, str]
Definition = dict[str, Any]

# --- runs and tasks --------------------------------------------------------------------

_TASK_COLUMNS = [c.label(f"t_{c.name}") for c in tasks.c if c.name != "run_id"]


def select_run_with_tasks() -> Select[Any]:
    """One round trip for a run and all its tasks (a run without tasks yields one row)."""
    joined = runs.outerjoin(tasks, tasks.c.run_id == runs.c.id)
    return select(*runs.c, *_TASK_COLUMNS).select_from(joined).order_by(tasks.c.position)


def run_from_rows(rows: Sequence[Row[Any]]) -> RunState:
    """The RunState of rows from `select_run_with_tasks` (at least one row)."""
    first = rows[0]._mapping
    task_list = [_task_from_mapping(r._mapping) for r in rows if r._mapping["t_task_id"]]
    return RunState(
        id=first["id"],
        workflow=first["workflow"],
        version=first["version"],
        status=RunStatus(first["status"]),
        input=decode_json(first["input"], Any),
        output=decode_json(first["output"], Any),
        error=decode_json(first["error"], ErrorInfo),
        created_at=first["created_at"],
        started_at=first["started_at"],
        finished_at=first["finished_at"],
        tasks={t.task_id: t for t in task_list},
        idempotency_key=first["idempotency_key"],
        parent_run_id=first["parent_run_id"],
        parent_task_id=first["parent_task_id"],
        signals=decode_json(first["signals"], Signals) or {},
        paused=bool(first["paused"]),
        tags=decode_json(first["tags"], Tags) or {},
    )


def _task_from_mapping(m: Any) -> TaskState:
    return TaskState(
        task_id=m["t_task_id"],
        type=m["t_type"],
        status=TaskStatus(m["t_status"]),
        attempt=m["t_attempt"],
        input=decode_json(m["t_input"], Any),
        output=decode_json(m["t_output"], Any),
        error=decode_json(m["t_error"], ErrorInfo),
        scheduled_at=m["t_scheduled_at"],
        started_at=m["t_started_at"],
        finished_at=m["t_finished_at"],
        progress=decode_json(m["t_progress"], MapProgress),
        child_run_id=m["t_child_run_id"],
        delivery=m["t_delivery"],
        resends=m["t_resends"],
        heartbeat=decode_json(m["t_heartbeat"], Heartbeat),
    )


def mutable_run_values(state: RunState) -> dict[str, Any]:
    """The run columns a decision may change."""
    return {
        "status": state.status.value,
        "input": encode_json(state.input),
        "output": encode_json(state.output),
        "error": encode_json(state.error),
        "started_at": state.started_at,
        "finished_at": state.finished_at,
        "signals": encode_json(state.signals),
        "paused": state.paused,
    }


def run_values(state: RunState, now: datetime) -> dict[str, Any]:
    """Every column of a new run row."""
    return {
        "id": state.id,
        "workflow": state.workflow,
        "version": state.version,
        "idempotency_key": state.idempotency_key,
        "parent_run_id": state.parent_run_id,
        "parent_task_id": state.parent_task_id,
        "created_at": state.created_at,
        "updated_at": now,
        "tags": encode_json(state.tags) if state.tags else None,
        **mutable_run_values(state),
    }


def tag_rows(state: RunState) -> list[dict[str, Any]]:
    """The `run_tags` rows of a new run."""
    return [
        {"run_id": state.id, "key": k, "value": v, "created_at": state.created_at}
        for k, v in state.tags.items()
    ]


def task_values(run_id: str, position: int, task: TaskState) -> dict[str, Any]:
    """Every column of a task row."""
    return {
        "run_id": run_id,
        "task_id": task.task_id,
        "position": position,
        "type": task.type,
        "status": task.status.value,
        "attempt": task.attempt,
        "input": encode_json(task.input),
        "output": encode_json(task.output),
        "error": encode_json(task.error),
        "scheduled_at": task.scheduled_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "progress": encode_json(task.progress),
        "child_run_id": task.child_run_id,
        "delivery": task.delivery,
        "resends": task.resends,
        "heartbeat": encode_json(task.heartbeat),
    }


SUMMARY_COLUMNS = [
    runs.c.id,
    runs.c.workflow,
    runs.c.version,
    runs.c.status,
    runs.c.created_at,
    runs.c.started_at,
    runs.c.finished_at,
    runs.c.idempotency_key,
    runs.c.paused,
    runs.c.tags,
]


def summary_from_row(row: Row[Any]) -> RunSummary:
    """A list entry from a row of `SUMMARY_COLUMNS`."""
    m = row._mapping
    return RunSummary(
        id=m["id"],
        workflow=m["workflow"],
        version=m["version"],
        status=m["status"],
        created_at=m["created_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        idempotency_key=m["idempotency_key"],
        paused=bool(m["paused"]),
        tags=decode_json(m["tags"], Tags) or {},
    )


def item_values(run_id: str, item: MapItem) -> dict[str, Any]:
    """Every column of a map item row."""
    return {
        "run_id": run_id,
        "task_id": item.task_id,
        "item_index": item.index,
        "status": item.status.value,
        "attempt": item.attempt,
        "input": encode_json(item.input),
        "output": encode_json(item.output),
        "error": encode_json(item.error),
        "scheduled_at": item.scheduled_at,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
        "delivery": item.delivery,
        "resends": item.resends,
        "heartbeat": encode_json(item.heartbeat),
    }


def item_from_row(row: Row[Any]) -> MapItem:
    """The map item of a full `map_items` row."""
    m = row._mapping
    return MapItem(
        task_id=m["task_id"],
        index=m["item_index"],
        status=TaskStatus(m["status"]),
        attempt=m["attempt"],
        input=decode_json(m["input"], Any),
        output=decode_json(m["output"], Any),
        error=decode_json(m["error"], ErrorInfo),
        scheduled_at=m["scheduled_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        delivery=m["delivery"],
        resends=m["resends"],
        heartbeat=decode_json(m["heartbeat"], Heartbeat),
    )


# --- history, outbox, timers, workflows ------------------------------------------------


def history_values(run_id: str, entry: HistoryEntry) -> dict[str, Any]:
    """A history row for one entry."""
    return {
        "run_id": run_id,
        "type": entry.type,
        "task_id": entry.task_id,
        "attempt": entry.attempt,
        "data": encode_json(entry.data),
        "at": entry.at,
    }


HISTORY_COLUMNS = [history.c.id, history.c.type, history.c.at, history.c.task_id]
HISTORY_COLUMNS += [history.c.attempt, history.c.data]


def history_from_row(row: Row[Any]) -> HistoryEntry:
    """The entry of a row of `HISTORY_COLUMNS`."""
    m = row._mapping
    return HistoryEntry(
        type=m["type"],
        at=m["at"],
        task_id=m["task_id"],
        attempt=m["attempt"],
        data=decode_json(m["data"], Any),
    )


OUTBOX_COLUMNS = [outbox.c.id, outbox.c.channel, outbox.c.key, outbox.c.body, outbox.c.headers]
OUTBOX_COLUMNS += [outbox.c.leased_until]


def outbox_values(
    channel: str, message: Message, now: datetime, lease_seconds: float | None = None
) -> dict[str, Any]:
    """An outbox row for one message (leased for `lease_seconds`, if given)."""
    leased = None if lease_seconds is None else now + timedelta(seconds=lease_seconds)
    return {
        "channel": channel,
        "key": message.key,
        "body": message.body,
        "headers": encode_json(message.headers),
        "created_at": now,
        "leased_until": leased,
    }


def outbox_from_row(row: Row[Any]) -> OutboxRecord:
    """The record of a row of `OUTBOX_COLUMNS`, claimed to publish: a row leased once (its
    eager attempt's process died) goes out marked as delivered once already."""
    m = row._mapping
    message = Message(
        key=m["key"], body=bytes(m["body"]), headers=decode_json(m["headers"], Headers) or {}
    )
    if m["leased_until"] is not None:
        message = delivered_once_more(message)
    return OutboxRecord(id=m["id"], channel=m["channel"], message=message)


TIMER_COLUMNS = [timers.c.run_id, timers.c.kind, timers.c.task_id, timers.c.attempt]
TIMER_COLUMNS += [timers.c.fire_at, timers.c.traceparent]


def timer_task_key(task_id: str | None, item: int | None) -> str:
    """The `task_id` column of a timer: '' for none, `<task>[<index>]` for a map item.

    Task ids never contain brackets, so the item index rides in the existing key column
    and the timers table needed no new column for it.
    """
    if item is None:
        return task_id or ""
    return f"{task_id}[{item}]"


def _split_timer_task(value: str) -> tuple[str | None, int | None]:
    task_id, bracket, rest = value.partition("[")
    if bracket and rest.endswith("]") and rest[:-1].isdigit():
        return task_id, int(rest[:-1])
    return value or None, None


def timer_from_row(row: Row[Any]) -> DueTimer:
    """The due timer of a row of `TIMER_COLUMNS`; '' in the table is 'no task'."""
    m = row._mapping
    task_id, item = _split_timer_task(m["task_id"])
    return DueTimer(
        run_id=m["run_id"],
        kind=TimerKind(m["kind"]),
        task_id=task_id,
        attempt=m["attempt"],
        fire_at=m["fire_at"],
        item=item,
        traceparent=m["traceparent"],
    )


def workflow_from_row(row: Row[Any]) -> StoredWorkflow:
    """A stored workflow from a full `workflows` row."""
    m = row._mapping
    return StoredWorkflow(
        name=m["name"],
        version=m["version"],
        definition=decode_json(m["definition"], Definition),
        digest=m["digest"],
        created_at=m["created_at"],
    )


WORKFLOW_COLUMNS = list(workflows.c)

# --- cursors ---------------------------------------------------------------------------
# A cursor is base64url of a small JSON array tagged with the list it belongs to, so a
# cursor from one list (or a hand-edited one) is refused rather than misread.

RunsCursor = tuple[datetime, str]
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)]
"""A cursor position compared with an INTEGER column (a version, an item index)."""
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""A cursor position compared with a BIGINT column (a history id)."""


def encode_cursor(kind: str, *position: Any) -> str:
    """An opaque cursor for the last item of a page."""
    raw = msgspec.json.encode([kind, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, kind: str, type_: Any) -> Any:
    """The position in `cursor` as `type_` (a tuple type); raises `InvalidCursor`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        tag, *position = msgspec.json.decode(raw, type=list[Any])
        if tag != kind:
            raise InvalidCursor(cursor)
        value = msgspec.convert(position, type=type_)
        if isinstance(value, tuple):
            return tuple(_cursor_part(v) for v in value)
    except (
        binascii.Error,
        ValueError,
        OverflowError,
        msgspec.DecodeError,
        msgspec.ValidationError,
    ):
        raise InvalidCursor(cursor) from None
    return value


def _cursor_part(value: Any) -> Any:
    """One part of a position, as queries compare it; raises ValueError for a forged one."""
    if isinstance(value, datetime):
        return as_utc(value)  # OverflowError past year 9999 or before year 1
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL in a cursor")  # PostgreSQL refuses it in a parameter
    return value


def item_record(item: MapItem) -> MapItemRecord:
    """A map item as the items page answers it (the same from every store)."""
    return MapItemRecord(
        index=item.index,
        status=item.status.value,
        attempt=item.attempt,
        input=item.input,
        output=item.output,
        error=item.error,
        scheduled_at=item.scheduled_at,
        started_at=item.started_at,
        finished_at=item.finished_at,
        heartbeat=item.heartbeat,
    )
