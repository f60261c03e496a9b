"""Heartbeats end to end: a real engine (its worker, orchestrator and timers) behind the
HTTP API, read through the typed client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from tests.integration.api._engines import engine_app
from tests.integration.engine import handlers
from tests.integration.engine.conftest import SettingsFactory
from tests.integration.engine.test_engine import finished, running
from treadle.client import AsyncClient
from treadle.domain.state import RunStatus
from treadle.wiring import Process, build

pytestmark = pytest.mark.anyio

BEATS = 3
STALLS = {
    "name": "stalls",
    "tasks": {
        "work": {
            "handler": "t.beat_then_hang",
            "input": {"beats": BEATS},
            "heartbeat_timeout": "2s",
            "retry": {"max_attempts": 2, "initial_interval": "100ms", "backoff": 1.0},
        }
    },
}
BEATING_MAP = {
    "name": "beating-map",
    "tasks": {
        "each": {
            "type": "map",
            "items": "${ input }",
            "task": {"handler": "t.beat", "input": {"item": "${ item }"}},
        }
    },
}


@asynccontextmanager
async def api_on(engine: Process) -> AsyncIterator[tuple[AsyncClient, httpx.AsyncClient]]:
    """A typed client and a plain HTTP client on the API of this running engine, in process."""
    transport = httpx.ASGITransport(engine_app(engine))
    async with (
        AsyncClient("http://treadle.test", transport=transport) as client,
        httpx.AsyncClient(base_url="http://treadle.test", transport=transport) as http,
    ):
        yield client, http


async def saw_cancel(run_id: str) -> None:
    """Wait until the run's hung attempt has seen its cancellation."""
    with anyio.fail_after(10):
        while True:
            if run_id in handlers.SAW_CANCEL:
                return
            await anyio.sleep(0.02)


async def every_item_beat(http: httpx.AsyncClient, run_id: str) -> None:
    """Wait until the items page shows a heartbeat on every item of the run's map."""
    with anyio.fail_after(10):
        while True:
            page = (await http.get(f"/v1/runs/{run_id}/tasks/each/items")).json()
            if page["items"] and all(i["heartbeat"] for i in page["items"]):
                return
            await anyio.sleep(0.05)


async def test_an_attempt_that_stops_beating_times_out_and_its_retry_completes(
    make_settings: SettingsFactory,
) -> None:
    """Attempt 1 beats, then goes quiet: it fails HeartbeatTimeout, sees its cancellation,
    attempt 2 completes, and the API shows attempt 1's last heartbeat details."""
    async with running(build(make_settings())) as engine, api_on(engine) as (api, _):
        await api.register_workflow(STALLS)
        started, _ = await api.start_run("stalls", None)
        try:
            done = await finished(engine, started.id)
            await saw_cancel(started.id)
        finally:
            handlers.RELEASED.add(started.id)  # never leave the handler hanging
        run = await api.get_run(started.id)
        history = await api.list_events(started.id)

    assert done.status is RunStatus.COMPLETED
    assert started.id in handlers.HUNG
    [task] = run.tasks
    assert (task.status, task.attempt, task.output) == ("completed", 2, {"attempt": 2})
    ended = [(e.type, e.attempt) for e in history.items if e.type.startswith("task.")]
    assert ("task.timed_out", 1) in ended
    assert ("task.retry_scheduled", 2) in ended
    [timed_out] = [e for e in history.items if e.type == "task.timed_out"]
    assert timed_out.data["error"]["type"] == "HeartbeatTimeout"
    assert task.heartbeat is not None
    assert task.heartbeat.attempt == 1
    assert task.heartbeat.details == {"done": BEATS, "of": BEATS}
    assert task.started_at is not None
    assert task.heartbeat.at < task.started_at  # kept from attempt 1, before attempt 2 began


async def test_a_map_items_page_shows_each_items_last_heartbeat(
    make_settings: SettingsFactory,
) -> None:
    """Each map item keeps the heartbeat its handler sent, on the items page of the API."""
    async with running(build(make_settings())) as engine, api_on(engine) as (api, http):
        await api.register_workflow(BEATING_MAP)
        started, _ = await api.start_run("beating-map", ["a", "b"])
        try:
            await every_item_beat(http, started.id)
        finally:
            handlers.RELEASED.add(started.id)
        done = await finished(engine, started.id)
        run = await api.get_run(started.id)
        page = (await http.get(f"/v1/runs/{started.id}/tasks/each/items")).json()

    assert done.status is RunStatus.COMPLETED
    beats = [
        (i["index"], i["heartbeat"]["attempt"], i["heartbeat"]["details"]) for i in page["items"]
    ]
    assert beats == [(0, 1, {"item": "a"}), (1, 1, {"item": "b"})]
    assert run.tasks[0].heartbeat is None  # the map task itself runs no handler
