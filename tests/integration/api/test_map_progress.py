"""A map task's `progress` as GET /v1/runs/{id} shows it."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from app.domain.state import MapProgress, TaskStatus
from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import register

pytestmark = pytest.mark.anyio

FAN = {
    "name": "fan",
    "tasks": {"m": {"type": "map", "items": "${ input }", "task": {"handler": "h"}}},
}


async def test_dispatched_counts_items_sent_not_the_dispatch_cursor(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """A map retried from item 3 and finished reads dispatched 5 of 5 (the cursor stops at 4)."""
    await register(http, FAN)
    started = await http.post("/v1/runs", json={"workflow": "fan", "input": [1, 2, 3, 4, 5]})
    run = engine.runs[started.json()["id"]]
    # What a run retry leaves once its rerun item 3 (the last one sent) has completed.
    progress = MapProgress(total=5, concurrency=5, next_index=4, in_flight=0, completed=5)
    task = msgspec.structs.replace(run.tasks["m"], status=TaskStatus.COMPLETED, progress=progress)
    engine.runs[run.id] = msgspec.structs.replace(run, tasks={"m": task})
    body = (await http.get(f"/v1/runs/{run.id}")).json()
    [shown] = body["tasks"]
    assert shown["progress"] == {
        "total": 5,
        "concurrency": 5,
        "dispatched": 5,
        "in_flight": 0,
        "completed": 5,
        "failed": 0,
    }
