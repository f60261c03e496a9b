"""`treadle run describe`: each task with its attempts, durations and errors, and what a
run that has not ended is waiting for."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from tests.unit.cli._fake_client import T0, FakeClient, run_body
from treadle.cli import Console, main
from treadle.cli._describe import attempts_by_task, duration, waiting_for
from treadle.domain.events import HistoryEntry
from treadle.domain.state import ErrorInfo
from treadle.modules.api import HeartbeatBody, HistoryPage, RunBody, TaskBody


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(kind: str, seconds: float, task_id: str, attempt: int, **data: Any) -> HistoryEntry:
    """A task's history entry `seconds` after T0."""
    return HistoryEntry(type=kind, at=at(seconds), task_id=task_id, attempt=attempt, data=data)


def task(task_id: str, status: str, attempt: int = 1, **fields: Any) -> TaskBody:
    """A handler task started at T0 unless told otherwise."""
    base: dict[str, Any] = {
        "type": "handler", "input": None, "output": None, "error": None,
        "scheduled_at": T0, "started_at": T0, "finished_at": None,
    }  # fmt: skip
    return TaskBody(task_id=task_id, status=status, attempt=attempt, **(base | fields))


CHARGE_FAILED = {"error": {"type": "ConnectionError", "message": "provider timed out"}}
HISTORY = [
    event("task.started", 0, "reserve", 1, worker="w1"),
    event("task.completed", 0.4, "reserve", 1),
    event("task.started", 0.5, "charge", 1, worker="w1"),
    event("task.failed", 1.5, "charge", 1, **CHARGE_FAILED),
    event("task.retry_scheduled", 1.5, "charge", 2, fire_at="2026-01-02T18:42:04.5Z"),
    event("task.started", 1, "approve", 1, signal="approval"),
    event("task.started", 1, "nap", 1, until="2026-01-02T19:00:00Z"),
]  # fmt: skip


def test_attempts_come_from_the_history_with_outcome_duration_and_error() -> None:
    """Each task's attempts are listed oldest first; a failed one keeps its error and the
    time its retry is due."""
    attempts = attempts_by_task(HISTORY)
    [reserve] = attempts["reserve"]
    assert (reserve.outcome, reserve.ended_at) == ("completed", at(0.4))
    [charge] = attempts["charge"]
    assert charge.outcome == "failed"
    assert charge.error == "ConnectionError: provider timed out"
    assert charge.retry_at == datetime(2026, 1, 2, 18, 42, 4, 500000, tzinfo=UTC)
    assert attempts["approve"][0].started == {"signal": "approval"}


def test_waiting_for_names_signals_timers_retries_and_running_attempts() -> None:
    """A running run waits on its signal's name, its timer's end, a retry's backoff and
    each running attempt (with its last heartbeat)."""
    beat = HeartbeatBody(at=at(2), attempt=1)
    run = msgspec.structs.replace(
        run_body("running"),
        tasks=[
            task("reserve", "completed", finished_at=at(0.4)),
            task("charge", "scheduled", attempt=2, started_at=None),
            task("approve", "running", type="signal"),
            task("nap", "running", type="sleep"),
            task("ship", "running", heartbeat=beat),
        ],
    )
    waits = waiting_for(run, attempts_by_task(HISTORY), now=at(3))
    assert waits == [
        "task charge: its retry at 2026-01-02T18:42:04Z",
        "task approve: signal 'approval'",
        "task nap: its timer, due 2026-01-02T19:00:00Z",
        "task ship: attempt 1 running for 3.00s, last heartbeat 1.00s ago",
    ]


def test_an_ended_run_waits_for_nothing_and_a_paused_one_for_its_resume() -> None:
    """Nothing is awaited once the run ended; a paused run says how to resume it."""
    assert waiting_for(run_body("completed"), {}, now=at(1)) == []
    paused = msgspec.structs.replace(run_body("running"), paused=True)
    assert waiting_for(paused, {}, now=at(1)) == [
        "a resume: the run is paused (treadle run resume r1)"
    ]


def test_durations_read_as_people_say_them() -> None:
    """Sub-second to hours: 0.42s, 12.5s, 2m 5s, 1h 1m; never negative."""
    assert [duration(timedelta(seconds=s)) for s in (0.42, 12.5, 125, 3660, -1)] == [
        "0.42s", "12.5s", "2m 5s", "1h 1m", "0.00s"
    ]  # fmt: skip


class Described(FakeClient):
    """A failed run: reserve done, charge failed twice, ship never ran."""

    def get_run(self, run_id: str, *, wait: float | None = None) -> RunBody:
        error = ErrorInfo(type="ConnectionError", message="provider timed out again")
        tasks = [
            task("reserve", "completed", finished_at=at(0.4)),
            task("charge", "failed", attempt=2, started_at=at(3.5), finished_at=at(5.75),
                 error=error),
            task("ship", "pending", started_at=None, scheduled_at=None),
        ]  # fmt: skip
        return msgspec.structs.replace(
            run_body("failed"), tasks=tasks, finished_at=at(6), error=error
        )

    def list_events(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        """The history over two pages."""
        later = [
            event("task.started", 3.5, "charge", 2),
            event("task.failed", 5.75, "charge", 2, **CHARGE_FAILED),
        ]
        if cursor is None:
            return HistoryPage(items=HISTORY[:5], next_cursor="p2")
        return HistoryPage(items=later, next_cursor=None)


def test_describe_shows_the_run_its_tasks_each_attempt_and_its_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The view has the run's status and times, a row per task, a row per earlier attempt
    with its duration and error, and the run's error; no "waiting for" once it ended."""
    monkeypatch.setenv("COLUMNS", "160")  # rich's width off a terminal; errors unwrapped
    out = io.StringIO()
    console = Console(out=out, err=io.StringIO(), tz=UTC, now=lambda: at(10))
    code = main(
        ["run", "describe", "r1"], client_factory=lambda url: Described([]), console=console
    )  # type: ignore[arg-type,return-value]
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "run r1  order v1  failed"
    assert "  took      6.00s" in lines
    assert any(
        line.startswith("  error     ConnectionError: provider timed out again") for line in lines
    )
    assert "waiting for" not in out.getvalue()
    rows = [line.split() for line in lines if line.split()[:1] in (["reserve"], ["charge"], ["ship"])]  # fmt: skip  # noqa: E501
    assert rows[0][:6] == ["reserve", "handler", "completed", "1", "18:42:01", "0.40s"]
    # The first attempt of charge, from the history's first page: failed after 1 s.
    assert rows[1][:5] == ["charge", "failed", "1", "18:42:01", "1.00s"]
    assert " ".join(rows[1][5:]) == "ConnectionError: provider timed out"
    assert rows[2][:6] == ["charge", "handler", "failed", "2", "18:42:04", "2.25s"]
    assert rows[3][:6] == ["ship", "handler", "pending", "1", "-", "-"]


def test_describe_as_json_is_the_run() -> None:
    """`run describe -o json` prints the same JSON as `run get`."""
    out = io.StringIO()
    console = Console(out=out, err=io.StringIO(), tz=UTC)
    argv = ["run", "describe", "r1", "-o", "json"]
    assert main(argv, client_factory=lambda url: Described([]), console=console) == 0  # type: ignore[arg-type,return-value]
    assert json.loads(out.getvalue())["error"]["message"] == "provider timed out again"


class EndlessHistory(Described):
    """A history with always one more page."""

    def __init__(self) -> None:
        super().__init__([])
        self.pages = 0

    def list_events(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        self.pages += 1
        return HistoryPage(items=HISTORY[:1], next_cursor=str(self.pages))


def test_describe_reads_a_bounded_history_and_says_so() -> None:
    """A huge history is read for 20 pages at most; stderr says where the rest is."""
    client = EndlessHistory()
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err, tz=UTC)
    assert main(["run", "describe", "r1"], client_factory=lambda url: client, console=console) == 0  # type: ignore[arg-type,return-value]
    assert client.pages == 20
    assert "`treadle run history r1` has them all" in err.getvalue()
    assert out.getvalue().startswith("run r1")
