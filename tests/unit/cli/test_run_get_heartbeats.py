"""`treadle run get` shows each task's last heartbeat: in the JSON, and as a line on stderr."""

from __future__ import annotations

import io
import json
from datetime import UTC, timedelta
from typing import Any

import msgspec

from tests.unit.cli._fake_client import T0, FakeClient, run_body
from treadle.cli import Console, heartbeat_line, main
from treadle.modules.api import HeartbeatBody, RunBody, TaskBody


def task(task_id: str, heartbeat: HeartbeatBody | None = None) -> TaskBody:
    """A running handler task with this last heartbeat."""
    return TaskBody(
        task_id=task_id, type="handler", status="running", attempt=2, input=None, output=None,
        error=None, scheduled_at=T0, started_at=T0, finished_at=None, heartbeat=heartbeat,
    )  # fmt: skip


class WithTasks(FakeClient):
    """Serves one run with these tasks."""

    def __init__(self, tasks: list[TaskBody]) -> None:
        super().__init__([])
        self.tasks = tasks

    def get_run(self, run_id: str) -> RunBody:
        return msgspec.structs.replace(run_body(), tasks=self.tasks)


def run_get(client: FakeClient, seconds_later: float) -> tuple[int, str, str]:
    """`treadle run get r1`, `seconds_later` than T0; (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    now = T0 + timedelta(seconds=seconds_later)
    console = Console(out=out, err=err, tz=UTC, now=lambda: now)
    code = main(["run", "get", "r1"], client_factory=lambda url: client, console=console)  # type: ignore[arg-type,return-value]
    return code, out.getvalue(), err.getvalue()


def test_run_get_prints_each_heartbeat_with_its_age_attempt_and_details() -> None:
    """A task that beat gets one stderr line; stdout stays the run's JSON, heartbeat in it."""
    beat = HeartbeatBody(at=T0, attempt=2, details={"done": 3, "of": 10})
    client = WithTasks([task("fetch", beat), task("ship")])
    code, out, err = run_get(client, seconds_later=3.4)
    assert code == 0
    assert err.splitlines() == ['task fetch  heartbeat 3s ago (attempt 2): {"done":3,"of":10}']
    shown: dict[str, Any] = json.loads(out)
    assert shown["tasks"][0]["heartbeat"] == {
        "at": "2026-01-02T18:42:01Z",
        "attempt": 2,
        "details": {"done": 3, "of": 10},
    }
    assert shown["tasks"][1]["heartbeat"] is None


def test_a_heartbeat_line_gives_long_ages_in_minutes_and_hours_and_cuts_long_details() -> None:
    """Ages read as 2m 5s or 1h 1m; details past 200 characters end in an ellipsis."""
    long = HeartbeatBody(at=T0, attempt=1, details="x" * 1000)
    line = heartbeat_line(task("t", long), T0 + timedelta(seconds=125))
    assert line is not None
    assert line.startswith('task t  heartbeat 2m 5s ago (attempt 1): "xxx')
    assert line.endswith("…")
    assert len(line.partition(": ")[2]) == 200
    plain = HeartbeatBody(at=T0, attempt=1)
    assert heartbeat_line(task("t", plain), T0 + timedelta(hours=1, minutes=1)) == (
        "task t  heartbeat 1h 1m ago (attempt 1)"
    )
    assert heartbeat_line(task("t", plain), T0 - timedelta(seconds=2)) == (
        "task t  heartbeat 0s ago (attempt 1)"
    )
    assert heartbeat_line(task("t"), T0) is None
