"""`GET /v1/workers`: the workers' own reports (a silent one told apart) and each queue's
backlog, read from the store and placed on the queue the task's definition names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import problem, register
from treadle.config import ApiSettings
from treadle.domain.state import MapItem, MapProgress, TaskStatus
from treadle.modules.api import create_app
from treadle.ports import WorkerRecord

pytestmark = pytest.mark.anyio

JOBS = {
    "name": "jobs",
    "tasks": {
        "render": {"handler": "gfx.render", "queue": "gpu"},
        "each": {"type": "map", "items": "${ input }", "task": {"handler": "h", "queue": "io"}},
    },
}


@pytest.fixture
async def workers_http(
    engine: FakeEngine, settings: ApiSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with the fake engine's memory store as the workers registry (interval 2 s)."""
    app = create_app(
        run_control=engine, workflows=engine, runs=engine, health=[], settings=settings,
        workers=engine, worker_report_seconds=2.0,
    )  # fmt: skip
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://treadle.test") as client:
        yield client


def worker(worker_id: str, seen_ago: float, queues: list[str]) -> WorkerRecord:
    now = datetime.now(UTC)
    return WorkerRecord(
        id=worker_id, host="box", pid=7, queues=queues, handlers=["gfx.render"],
        concurrency=4, inflight=1, started_at=now - timedelta(hours=1),
        last_seen=now - timedelta(seconds=seen_ago),
    )  # fmt: skip


async def test_workers_and_queues_read_from_the_store(
    workers_http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """A worker seen 1 s ago is live, one seen 10 s ago (over 3 x 2 s) is silent and not
    counted on its queue; dispatched tasks and items wait on their definition's queue."""
    await register(workers_http, JOBS)
    await engine.record_worker(worker("w-live", 1, ["gpu", "default"]))
    await engine.record_worker(worker("w-quiet", 10, ["io"]))
    started = await workers_http.post("/v1/runs", json={"workflow": "jobs", "input": [1, 2]})
    run = engine.runs[started.json()["id"]]
    since = datetime(2030, 1, 1, tzinfo=UTC)
    render = msgspec.structs.replace(
        run.tasks["render"], status=TaskStatus.SCHEDULED, scheduled_at=since
    )
    each = msgspec.structs.replace(
        run.tasks["each"], type="map", status=TaskStatus.RUNNING,
        progress=MapProgress(total=2, concurrency=2),
    )  # fmt: skip
    engine.runs[run.id] = msgspec.structs.replace(run, tasks={"render": render, "each": each})
    engine.data.items[run.id] = {
        "each": {
            i: MapItem(task_id="each", index=i, status=TaskStatus.SCHEDULED,
                       scheduled_at=since + timedelta(seconds=i))
            for i in range(2)
        }
    }  # fmt: skip

    body = (await workers_http.get("/v1/workers")).json()

    assert [(w["id"], w["silent"]) for w in body["workers"]] == [
        ("w-live", False),
        ("w-quiet", True),
    ]
    assert body["workers"][0]["queues"] == ["gpu", "default"]
    assert body["report_interval_seconds"] == 2.0
    assert body["queues"] == [
        {"queue": "default", "workers": 1, "waiting": 0, "oldest_waiting_since": None},
        {
            "queue": "gpu",
            "workers": 1,
            "waiting": 1,
            "oldest_waiting_since": "2030-01-01T00:00:00Z",
        },
        {"queue": "io", "workers": 0, "waiting": 2, "oldest_waiting_since": "2030-01-01T00:00:00Z"},
    ]


async def test_a_server_without_the_registry_says_so(http: httpx.AsyncClient) -> None:
    """An app built without a workers registry answers a 404 problem, not a 500."""
    problem(await http.get("/v1/workers"), 404, "workers-unavailable")
