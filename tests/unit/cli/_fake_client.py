"""An in-process stand-in for `treadle.client.Client` in CLI tests: runs advance a step per poll."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from treadle.client import ApiError
from treadle.domain.events import HistoryEntry
from treadle.modules.api import (
    HistoryPage,
    RunBody,
    RunPage,
    ScheduleBody,
    SchedulePage,
    WorkflowPage,
    WorkflowRef,
)

T0 = datetime(2026, 1, 2, 18, 42, 1, tzinfo=UTC)


def run_body(status: str = "running", run_id: str = "r1") -> RunBody:
    """A run in `status` with no tasks."""
    return RunBody(
        id=run_id,
        workflow="order",
        version=1,
        status=status,
        input={"sku": "A1"},
        output=None,
        error=None,
        created_at=T0,
        started_at=T0,
        finished_at=None,
        tasks=[],
    )


class FakeClient:
    """Serves a scripted run: each get_run poll reveals the next batch of history."""

    def __init__(self, batches: list[list[HistoryEntry]], final: str = "completed") -> None:
        self.batches = batches
        self.final = final
        self.polls = 0
        self.calls: list[tuple[str, Any]] = []
        self.page_size = 2
        self.waits: list[float | None] = []

    def _visible(self) -> list[HistoryEntry]:
        return [e for batch in self.batches[: self.polls] for e in batch]

    def get_run(self, run_id: str, *, wait: float | None = None) -> RunBody:
        """The next step of the script; `wait` (the long poll) is recorded, not slept."""
        self.waits.append(wait)
        self.polls += 1
        if run_id != "r1":
            raise ApiError(404, "Run not found", f"run {run_id!r} does not exist", {})
        done = self.polls >= len(self.batches)
        return run_body(self.final if done else "running")

    def list_events(
        self, run_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> HistoryPage:
        start = int(cursor or 0)
        entries = self._visible()
        end = start + self.page_size
        more = end < len(entries)
        return HistoryPage(items=entries[start:end], next_cursor=str(end) if more else None)

    def start_run(
        self,
        workflow: str,
        input: Any = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        tags: dict[str, str] | None = None,
    ) -> tuple[RunBody, bool]:
        self.calls.append(("start_run", (workflow, input, version, idempotency_key)))
        if tags:
            self.calls.append(("start_run_tags", tags))
        if workflow == "strict":
            raise ApiError(
                422,
                "Run input does not match the input schema",
                "input.sku: required",
                {"errors": [{"path": "input.sku", "message": "required"}]},
            )
        return run_body(), True

    def register_workflow(self, definition: dict[str, Any]) -> tuple[WorkflowRef, bool]:
        self.calls.append(("register_workflow", definition))
        return WorkflowRef(name=definition["name"], version=3), False

    def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WorkflowPage:
        return WorkflowPage(items=[], next_cursor=None)

    def list_runs(self, **filters: Any) -> RunPage:
        self.calls.append(("list_runs", filters))
        return RunPage(items=[], next_cursor=None)

    def cancel_run(self, run_id: str, reason: str = "") -> RunBody:
        self.calls.append(("cancel_run", (run_id, reason)))
        return run_body("running")

    def signal_run(self, run_id: str, name: str, payload: Any = None) -> RunBody:
        self.calls.append(("signal_run", (run_id, name, payload)))
        return run_body("running")

    def retry_run(self, run_id: str) -> RunBody:
        self.calls.append(("retry_run", run_id))
        return run_body("running", run_id)

    def pause_run(self, run_id: str) -> RunBody:
        self.calls.append(("pause_run", run_id))
        return run_body("running", run_id)

    def resume_run(self, run_id: str) -> RunBody:
        self.calls.append(("resume_run", run_id))
        return run_body("running", run_id)

    def create_schedule(self, spec: Mapping[str, Any]) -> ScheduleBody:
        self.calls.append(("create_schedule", dict(spec)))
        return schedule_body(name=spec["name"], cron=spec.get("cron"))

    def list_schedules(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> SchedulePage:
        """Two pages: the hourly cron, then a 30-second interval."""
        if cursor is None:
            return SchedulePage(items=[schedule_body()], next_cursor="2")
        every = schedule_body("s2", "tick", cron=None, interval_seconds=30.0, paused=True)
        return SchedulePage(items=[every], next_cursor=None)

    def pause_schedule(self, schedule_id: str) -> ScheduleBody:
        self.calls.append(("pause_schedule", schedule_id))
        return schedule_body(schedule_id, paused=True)

    def resume_schedule(self, schedule_id: str) -> ScheduleBody:
        self.calls.append(("resume_schedule", schedule_id))
        return schedule_body(schedule_id)

    def update_schedule(self, schedule_id: str, patch: Mapping[str, Any]) -> ScheduleBody:
        self.calls.append(("update_schedule", (schedule_id, dict(patch))))
        return schedule_body(schedule_id, cron=patch.get("cron"))

    def trigger_schedule(self, schedule_id: str) -> RunBody:
        self.calls.append(("trigger_schedule", schedule_id))
        return run_body("running")

    def backfill_schedule(
        self, schedule_id: str, start: str, end: str, *, max_concurrent: int | None = None
    ) -> ScheduleBody:
        self.calls.append(("backfill_schedule", (schedule_id, start, end, max_concurrent)))
        return schedule_body(schedule_id)

    def cancel_backfill(self, schedule_id: str) -> ScheduleBody:
        self.calls.append(("cancel_backfill", schedule_id))
        return schedule_body(schedule_id)

    def delete_schedule(self, schedule_id: str) -> None:
        self.calls.append(("delete_schedule", schedule_id))
        if schedule_id != "s1":
            raise ApiError(404, "Schedule not found", f"no schedule {schedule_id!r}", {})


def schedule_body(
    schedule_id: str = "s1",
    name: str = "hourly",
    *,
    cron: str | None = "0 * * * *",
    interval_seconds: float | None = None,
    paused: bool = False,
) -> ScheduleBody:
    """A schedule of `order`, on a cron unless `interval_seconds` is given."""
    return ScheduleBody(
        id=schedule_id,
        name=name,
        workflow="order",
        version=None,
        input=None,
        cron=cron,
        timezone="UTC",
        interval_seconds=interval_seconds,
        overlap="skip",
        catch_up="skip",
        paused=paused,
        next_fire_at=T0,
        last_fire_at=None,
        last_run_id=None,
        created_at=T0,
    )
