"""The attempt and timer keys: one definition, read from the fields each Struct carries."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from treadle import ports
from treadle.domain import events
from treadle.domain.events import CancelAttempts, CancelTimer, DispatchTask, StartTimer, TimerKind
from treadle.domain.keys import AttemptFields, AttemptKey, TimerFields, TimerKey
from treadle.ports import DueTimer

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _structs_with(mixin: type) -> list[type[msgspec.Struct]]:
    found = [*vars(events).values(), *vars(ports).values()]
    return [
        c
        for c in found
        if isinstance(c, type) and issubclass(c, msgspec.Struct) and issubclass(c, mixin)
    ]


@pytest.mark.parametrize(
    ("mixin", "read"),
    [(AttemptFields, AttemptKey._fields), (TimerFields, TimerKey._fields)],
    ids=["attempt", "timer"],
)
def test_every_struct_with_a_key_carries_the_fields_it_reads(
    mixin: type, read: tuple[str, ...]
) -> None:
    """The mixin declares no field: each Struct using it declares every one the key reads."""
    structs = _structs_with(mixin)
    assert len(structs) >= 3
    for struct in structs:
        declared = {field.name for field in msgspec.structs.fields(struct)}
        assert set(read) <= declared, struct.__name__


def test_an_attempt_key_names_run_task_attempt_and_item() -> None:
    """Two dispatches of one map item share a key; another item or attempt does not."""

    def dispatch(attempt: int, item: int | None) -> DispatchTask:
        return DispatchTask(
            run_id="r", task_id="t", attempt=attempt, item=item, task_type="handler", queue="q"
        )

    assert dispatch(2, 5).attempt_key == AttemptKey("r", "t", 2, 5)
    assert dispatch(2, 5).attempt_key == dispatch(2, 5).attempt_key
    assert dispatch(2, None).attempt_key != dispatch(2, 5).attempt_key
    assert dispatch(3, 5).attempt_key != dispatch(2, 5).attempt_key
    assert CancelAttempts(run_id="r", task_id="t", attempt=2, item=5).matches(
        *dispatch(2, 5).attempt_key
    )


def test_a_start_a_cancel_and_a_due_timer_of_one_row_share_a_timer_key() -> None:
    """The key leaves out what a row's identity does not include (its time, its trace)."""
    kind = TimerKind.RETRY
    start = StartTimer(run_id="r", kind=kind, task_id="t", attempt=2, item=1, fire_at=NOW)
    cancel = CancelTimer(run_id="r", kind=kind, task_id="t", attempt=2, item=1)
    due = DueTimer(
        run_id="r", kind=kind, task_id="t", attempt=2, item=1, fire_at=NOW, traceparent="00-a-b-01"
    )
    assert start.timer_key == cancel.timer_key == due.timer_key
    assert start.timer_key == TimerKey("r", "retry", "t", 2, 1)
    other_item = CancelTimer(run_id="r", kind=kind, task_id="t", attempt=2)
    assert other_item.timer_key != start.timer_key
