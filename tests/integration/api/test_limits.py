"""`[limits]` over HTTP: each refusal is a 4xx problem naming its key, each run-time
limit fails the task with a clear error type (real engine, SQLite, in-process transport)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from treadle.config import (
    ApiSettings,
    DatabaseSettings,
    LimitsSettings,
    OrchestratorSettings,
    Settings,
    TransportSettings,
    WorkerSettings,
)
from treadle.modules.api import create_app
from treadle.wiring import build

pytestmark = pytest.mark.anyio

LIMITS = LimitsSettings(
    max_definition_bytes=2000,
    max_tasks=3,
    max_run_input_bytes=500,
    max_signal_payload_bytes=100,
    max_expression_bytes=1000,
    max_map_items=3,
)
GATE: dict[str, Any] = {"name": "gate", "tasks": {"wait": {"type": "signal", "signal": "go"}}}


def _greet(name: str, who: Any) -> dict[str, Any]:
    return {"name": name, "tasks": {"hello": {"handler": "api.greet", "input": {"who": who}}}}


@pytest.fixture
def anyio_backend() -> str:
    """The engine's drivers run on asyncio."""
    return "asyncio"


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on an app wired to a running engine with small limits."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"),
        transport=TransportSettings(kind="memory"),
        worker=WorkerSettings(concurrency=4, drain_seconds=0.2),
        orchestrator=OrchestratorSettings(timer_poll_seconds=0.2, sweep_interval_seconds=0.5),
        limits=LIMITS,
    )
    engine = build(settings, handler_modules=["tests.integration.api.handlers"])
    await engine.store.migrate()
    await engine.connect()
    app = create_app(
        run_control=engine.run_service,
        workflows=engine.store,
        runs=engine.store,
        health=engine.health_checks(),
        settings=ApiSettings(),
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(base_url="http://treadle.test", transport=transport) as c:
                # Like test_real_engine: the store is in use (and the roles running) before a
                # test begins, since cancelling them mid start-up can hang SQLite's close.
                assert (await c.post("/v1/workflows", json=GATE)).status_code == 201
                yield c
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


async def _finished(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        while True:
            run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
            if run["finished_at"] is not None:
                return run
            await anyio.sleep(0.05)


async def _start(api: httpx.AsyncClient, workflow: str, input: Any) -> httpx.Response:
    return await api.post("/v1/runs", json={"workflow": workflow, "input": input})


def _assert_limit(response: httpx.Response, status: int, key: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert key in response.text


async def test_a_definition_over_the_byte_limit_is_413(api: httpx.AsyncClient) -> None:
    """A definition larger than max_definition_bytes is refused with the key and sizes."""
    response = await api.post("/v1/workflows", json=_greet("big", "x" * 3000))
    _assert_limit(response, 413, "limits.max_definition_bytes")
    body = response.json()
    assert (body["limit"], body["maximum"]) == ("limits.max_definition_bytes", 2000)
    assert body["size"] > 3000


async def test_too_many_tasks_is_422_at_tasks(api: httpx.AsyncClient) -> None:
    """A definition with more than max_tasks tasks is a 422 issue at `tasks`."""
    tasks = {f"t{i}": {"handler": "api.greet"} for i in range(4)}
    response = await api.post("/v1/workflows", json={"name": "wide", "tasks": tasks})
    _assert_limit(response, 422, "limits.max_tasks")
    assert response.json()["errors"][0]["path"] == "tasks"


async def test_a_static_expression_over_the_limit_is_422(api: httpx.AsyncClient) -> None:
    """An expression that reads no run data and builds too much fails registration."""
    doubling = "'abcd' | " + " | ".join(["join('', [@, @])"] * 12)
    response = await api.post("/v1/workflows", json=_greet("static", f"${{ {doubling} }}"))
    _assert_limit(response, 422, "limits.max_expression_bytes")
    assert response.json()["errors"][0]["path"] == "tasks.hello.input.who"


async def test_run_input_and_signal_payload_over_their_limits_are_413(
    api: httpx.AsyncClient,
) -> None:
    """A big run input and a big signal payload are refused; small ones go through."""
    _assert_limit(await _start(api, "gate", {"x": "y" * 600}), 413, "limits.max_run_input_bytes")
    started = await _start(api, "gate", {"x": "small"})
    assert started.status_code == 201, started.text
    signals = f"/v1/runs/{started.json()['id']}/signals/go"
    too_big = await api.post(signals, json={"note": "n" * 200})
    _assert_limit(too_big, 413, "limits.max_signal_payload_bytes")
    assert (await api.post(signals, json={"ok": True})).status_code < 300
    assert (await _finished(api, started.json()["id"]))["status"] == "completed"


async def test_an_expression_building_too_much_fails_its_task_without_retry(
    api: httpx.AsyncClient,
) -> None:
    """A run whose input makes an expression double past the limit fails as ExpressionLimit."""
    doubling = "input | " + " | ".join(["join('', [@, @])"] * 30)
    definition = _greet("doubler", f"${{ {doubling} }}")
    definition["tasks"]["hello"]["retry"] = {"max_attempts": 3}
    assert (await api.post("/v1/workflows", json=definition)).status_code == 201
    started = await _start(api, "doubler", "abc")
    run = await _finished(api, started.json()["id"])
    assert run["status"] == "failed"
    [task] = run["tasks"]
    assert task["error"]["type"] == "ExpressionLimit"
    assert task["error"]["retryable"] is False
    assert "limits.max_expression_bytes" in task["error"]["message"]


async def test_a_map_over_more_items_than_the_limit_fails(api: httpx.AsyncClient) -> None:
    """A map whose list is longer than max_map_items fails as MapTooLarge naming the key."""
    definition = {
        "name": "fan",
        "tasks": {
            "each": {
                "type": "map",
                "items": "${ input }",
                "task": {"handler": "api.greet", "input": {"who": "${ item }"}},
            }
        },
    }
    assert (await api.post("/v1/workflows", json=definition)).status_code == 201
    ok = await _finished(api, (await _start(api, "fan", ["a", "b", "c"])).json()["id"])
    assert ok["status"] == "completed", ok
    run = await _finished(api, (await _start(api, "fan", ["a", "b", "c", "d"])).json()["id"])
    assert run["status"] == "failed"
    error = run["tasks"][0]["error"]
    assert error["type"] == "MapTooLarge"
    assert "limits.max_map_items" in error["message"]
