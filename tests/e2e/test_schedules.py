"""Schedules over HTTP: validation, pause/delete, and one run per tick with two orchestrators."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import delete_namespace
from tests.e2e.conftest import Server, _admin, start_server

pytestmark = pytest.mark.e2e

HANDLERS = ("--handlers", "tests.e2e.control_handlers")
TICK = {"name": "ticker", "tasks": {"t": {"handler": "e2e.tick"}}}
TOLERANCE = timedelta(seconds=1.0)
"""How late a tick's run may be created: the loop polls every 0.2s on a busy 2-core box."""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """Start processes on one fresh PostgreSQL database and a private RabbitMQ namespace."""
    name = f"treadle_e2e_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    monkeypatch.setenv("TREADLE_TRANSPORT", "rabbitmq")
    monkeypatch.setenv("TREADLE_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/")
    namespace = f"e2e-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TREADLE_TRANSPORT__NAMESPACE", namespace)
    monkeypatch.setenv("TREADLE_DATABASE__MIGRATE_ON_START", "true")
    servers: list[Server] = []

    def _start(*extra: str) -> Server:
        server = start_server(tmp_path, url, *extra)
        servers.append(server)
        return server

    try:
        yield _start
    finally:
        for server in servers:
            server.stop()
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        delete_namespace("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/", namespace)


def _tick_of(run: dict[str, Any]) -> datetime:
    key = run["idempotency_key"]
    assert key.startswith("schedule:"), key
    return datetime.fromisoformat(key.split(":", 2)[2])


def test_interval_schedule_starts_one_run_per_tick_with_two_orchestrators(
    cluster: Callable[..., Server],
) -> None:
    """Two orchestrators race for a 1-second schedule: each tick gets exactly one run, on time."""
    api = cluster("--roles", "api,worker", *HANDLERS)
    cluster("--roles", "orchestrator")
    cluster("--roles", "orchestrator")
    assert api.http.post("/v1/workflows", json=TICK).status_code == 201
    start_at = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    created = api.http.post(
        "/v1/schedules",
        json={
            "name": "every-second",
            "workflow": "ticker",
            "interval": "1s",
            "overlap": "allow",
            "start_at": start_at.isoformat(),
        },
    )
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert datetime.fromisoformat(schedule["next_fire_at"]) == start_at
    time.sleep((start_at - datetime.now(UTC)).total_seconds() + 4.5)
    paused = api.http.post(f"/v1/schedules/{schedule['id']}/pause")
    assert paused.status_code == 200
    assert paused.json()["paused"] is True
    listed = api.http.get("/v1/runs", params={"workflow": "ticker", "limit": 50}).json()["items"]
    runs = [api.wait_for_run(r["id"]) for r in listed]
    assert all(r["status"] == "completed" for r in runs), api.tail()
    ticks = sorted(_tick_of(r) for r in runs)
    assert len(ticks) == len(set(ticks)), "two runs for one tick"
    assert len(ticks) >= 4, ticks
    assert ticks == [start_at + timedelta(seconds=i) for i in range(len(ticks))]
    for run in runs:
        late = datetime.fromisoformat(run["created_at"]) - _tick_of(run)
        assert timedelta(0) <= late <= TOLERANCE, (run["idempotency_key"], late)
    assert api.http.get(f"/v1/schedules/{schedule['id']}").json()["last_run_id"] in {
        r["id"] for r in runs
    }


def test_schedule_crud_and_bad_input(serve: Callable[..., Server]) -> None:
    """Create, list, pause, resume and delete answer as documented; bad fields are 422."""
    server = serve(*HANDLERS)
    assert server.http.post("/v1/workflows", json=TICK).status_code == 201
    body = {
        "name": "nightly",
        "workflow": "ticker",
        "cron": "0 2 * * *",
        "timezone": "Europe/Berlin",
    }
    made = server.http.post("/v1/schedules", json=body)
    assert made.status_code == 201, made.text
    sid = made.json()["id"]
    assert server.http.post("/v1/schedules", json=body).status_code == 409
    page = server.http.get("/v1/schedules").json()
    assert [s["name"] for s in page["items"]] == ["nightly"]
    assert page["next_cursor"] is None
    assert server.http.post(f"/v1/schedules/{sid}/pause").json()["paused"] is True
    resumed = server.http.post(f"/v1/schedules/{sid}/resume").json()
    assert resumed["paused"] is False
    assert datetime.fromisoformat(resumed["next_fire_at"]) > datetime.now(UTC)
    assert server.http.delete(f"/v1/schedules/{sid}").status_code == 204
    assert server.http.get(f"/v1/schedules/{sid}").status_code == 404
    for bad, path in [
        ({"cron": "99 * * * *"}, "cron"),
        ({"cron": "0 * * * *", "timezone": "Nowhere/Land"}, "timezone"),
        ({"interval": "often"}, "interval"),
        ({"interval": "1s", "start_at": "next tuesday"}, "start_at"),
        ({"interval": "1s", "overlap": "maybe"}, "overlap"),
        ({"interval": "1s", "workflow": "missing"}, "workflow"),
    ]:
        answer = server.http.post("/v1/schedules", json={"name": "x", "workflow": "ticker", **bad})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert path in [e["path"] for e in answer.json()["errors"]], answer.json()
