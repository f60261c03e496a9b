"""/metrics of a real engine (SQLite, in-process transport) moves as a run progresses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.observability.conftest import FLAKY
from treadle.config import DatabaseSettings, OrchestratorSettings, Settings, WorkerSettings
from treadle.modules.api import create_app
from treadle.wiring import build

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the API of an engine whose worker and orchestrator run alongside."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        worker=WorkerSettings(concurrency=4, drain_seconds=0.2),
        orchestrator=OrchestratorSettings(timer_poll_seconds=0.1),
    )
    engine = build(settings, handler_modules=["tests.e2e.handlers"])
    await engine.store.migrate()
    await engine.connect()
    app = create_app(
        run_control=engine.run_service,
        workflows=engine.store,
        runs=engine.store,
        health=engine.health_checks(),
        settings=settings.api,
        telemetry=engine.telemetry,
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                yield client
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of /metrics by (name, labels)."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    """The sample's value, 0 when the series does not exist yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_and_histograms_move_as_a_run_progresses(http: httpx.AsyncClient) -> None:
    """Starting and finishing a run with a retried task moves each run and task counter."""
    before = await scrape(http)
    assert value(before, "treadle_runs_started_total", workflow="obs-flaky") == 0
    assert (await http.post("/v1/workflows", json=FLAKY)).status_code == 201
    started = await http.post("/v1/runs", json={"workflow": "obs-flaky", "input": {}})
    assert started.status_code == 201
    run_id = started.json()["id"]

    mid = await scrape(http)
    assert value(mid, "treadle_runs_started_total", workflow="obs-flaky") == 1
    flaky = {"task_type": "handler", "handler": "e2e.flaky"}
    assert value(mid, "treadle_tasks_dispatched_total", **flaky) >= 1

    with anyio.fail_after(15):
        while True:
            if (await http.get(f"/v1/runs/{run_id}")).json()["status"] == "completed":
                break
            await anyio.sleep(0.05)
    after = await scrape(http)
    done = {"workflow": "obs-flaky", "status": "completed"}
    assert value(after, "treadle_runs_finished_total", **done) == 1
    assert value(after, "treadle_tasks_dispatched_total", **flaky) == 2
    assert value(after, "treadle_tasks_finished_total", **flaky, outcome="retried") == 1
    assert value(after, "treadle_tasks_finished_total", **flaky, outcome="completed") == 1
    echo = {"task_type": "handler", "handler": "e2e.echo", "outcome": "completed"}
    assert value(after, "treadle_tasks_finished_total", **echo) == 1
    assert (
        value(
            after, "treadle_task_duration_seconds_count", task_type="handler", handler="e2e.flaky"
        )
        == 2
    )
    assert value(after, "treadle_task_schedule_to_start_seconds_count", task_type="handler") == 3
    assert value(after, "treadle_decision_duration_seconds_count") > value(
        mid, "treadle_decision_duration_seconds_count"
    )
    assert value(after, "treadle_worker_concurrency_limit") == 4
    route = {"route": "/v1/runs", "method": "POST", "status": "201"}
    assert value(after, "treadle_http_requests_total", **route) == 1
    assert not any(run_id in str(labels) for _, labels in after)  # no run ids in labels
