"""A map task's `progress` as GET /v1/runs/{id} shows it, and its items page."""

from __future__ import annotations

import httpx
import msgspec
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import problem, register
from treadle.domain.state import ErrorInfo, MapItem, MapProgress, TaskStatus

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


async def test_the_items_page_is_the_stores_for_a_map_task_and_404_for_another(
    http: httpx.AsyncClient,
) -> None:
    """The items route reads the store's port (no probing): a map task's page, in order, or
    a task-not-found problem for a task that is no map."""
    await register(http, FAN)
    await register(http, {"name": "plain", "tasks": {"h": {"handler": "h"}}})
    fan = (await http.post("/v1/runs", json={"workflow": "fan", "input": [1, 2]})).json()
    plain = (await http.post("/v1/runs", json={"workflow": "plain"})).json()

    page = await http.get(f"/v1/runs/{fan['id']}/tasks/m/items")
    refused = await http.get(f"/v1/runs/{plain['id']}/tasks/h/items")

    assert page.status_code == 200, page.text
    assert page.json() == {"items": [], "next_cursor": None}  # the fake never dispatches
    assert problem(refused, 404, "task-not-found")["task_id"] == "h"


async def test_the_items_page_filters_by_status_and_starts_at_an_index(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """`status` keeps the failed items (errors and all), `from_index` opens the page at one
    item, and a status that is no task status is a 400 naming the parameter."""
    await register(http, FAN)
    fan = (await http.post("/v1/runs", json={"workflow": "fan", "input": [0] * 8})).json()
    boom = ErrorInfo(type="Boom", message="item 5 broke")
    engine.data.items[fan["id"]] = {
        "m": {
            i: MapItem(
                task_id="m",
                index=i,
                status=TaskStatus.FAILED if i in (2, 5) else TaskStatus.COMPLETED,
                error=boom if i == 5 else None,
            )
            for i in range(8)
        }
    }
    base = f"/v1/runs/{fan['id']}/tasks/m/items"

    failed = (await http.get(base, params={"status": "failed"})).json()
    one = (await http.get(base, params={"from_index": 5, "limit": 1})).json()
    bad = await http.get(base, params={"status": "exploded"})
    negative = await http.get(base, params={"from_index": -1})

    assert [(i["index"], i["status"]) for i in failed["items"]] == [(2, "failed"), (5, "failed")]
    assert failed["items"][1]["error"]["message"] == "item 5 broke"
    assert [i["index"] for i in one["items"]] == [5]
    assert one["next_cursor"] is not None
    assert "status" in problem(bad, 400)["detail"]
    assert negative.status_code == 400
