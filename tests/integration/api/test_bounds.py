"""Every value the store keeps in a sized column, and every request byte a driver or
decoder could choke on, is checked at the API: a 4xx problem on every database, never a
500 (real engine on SQLite, PostgreSQL and MariaDB, in-process transport)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import msgspec
import pytest

from tests.integration.api._engines import DATABASES, engine_client
from tests.integration.api.conftest import problem, register
from treadle.domain.limits import KEY_CHARS, NAME_CHARS, TASK_ID_CHARS

pytestmark = pytest.mark.anyio

GATE: dict[str, Any] = {"name": "gate", "tasks": {"wait": {"type": "signal", "signal": "go"}}}


@pytest.fixture(params=DATABASES)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a running engine on each database, with `gate` registered."""
    async with engine_client(request.param, tmp_path) as client:
        assert (await client.post("/v1/workflows", json=GATE)).status_code == 201
        yield client


async def _finished(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(30):
        while True:
            run: dict[str, Any] = (await api.get(f"/v1/runs/{run_id}")).json()
            if run["finished_at"] is not None:
                return run
            await anyio.sleep(0.05)


async def test_names_and_keys_longer_than_their_columns_are_422(api: httpx.AsyncClient) -> None:
    """A workflow name, task id, queue, Idempotency-Key, signal name or schedule field too
    long for its column is a 422 naming it; the longest that fits is accepted."""
    long_name = {"name": "a" * 3000, "tasks": {"t": {"handler": "api.greet"}}}
    body = problem(await api.post("/v1/workflows", json=long_name), 422, "definition-invalid")
    assert body["errors"][0]["path"] == "name"
    long_task = {"name": "t", "tasks": {"t" * (TASK_ID_CHARS + 1): {"handler": "api.greet"}}}
    problem(await api.post("/v1/workflows", json=long_task), 422, "definition-invalid")
    queue = {"handler": "api.greet", "queue": "q" * (NAME_CHARS + 1)}
    long_queue = {"name": "q", "tasks": {"t": queue}}
    problem(await api.post("/v1/workflows", json=long_queue), 422, "definition-invalid")

    start = {"workflow": "w" * 3000}
    problem(await api.post("/v1/runs", json=start), 422, "value-invalid")
    key = {"Idempotency-Key": "k" * 8000}
    body = problem(await api.post("/v1/runs", json={"workflow": "gate"}, headers=key), 422)
    assert body["parameter"] == "Idempotency-Key"
    longest = {"Idempotency-Key": "k" * KEY_CHARS}
    run = await api.post("/v1/runs", json={"workflow": "gate"}, headers=longest)
    assert run.status_code == 201, run.text
    signal = f"/v1/runs/{run.json()['id']}/signals/{'s' * (NAME_CHARS + 1)}"
    problem(await api.post(signal, json={}), 422, "value-invalid")

    for field, value in (("cron", "* " * 150), ("name", "n" * 3000), ("workflow", "w" * 300)):
        schedule = {"name": "nightly", "workflow": "gate", "cron": "0 3 * * *", field: value}
        body = problem(await api.post("/v1/schedules", json=schedule), 422, "schedule-invalid")
        assert body["errors"][0]["path"] == field
    too_new = {"name": "n", "workflow": "gate", "cron": "0 3 * * *", "version": 2**40}
    problem(await api.post("/v1/schedules", json=too_new), 422, "schedule-invalid")


async def test_a_map_task_with_the_longest_task_id_runs_past_item_ten(
    api: httpx.AsyncClient,
) -> None:
    """A map task whose id is as long as allowed completes all its items (its timers'
    keys `<task>[<index>]` fit their column)."""
    task_id = "m" * TASK_ID_CHARS
    task = {"handler": "api.greet", "input": {"who": "${ to_string(item) }"}, "timeout": "30s"}
    mapped = {"type": "map", "items": "${ input.items }", "task": task, "concurrency": 4}
    definition = {"name": "wide", "tasks": {task_id: mapped}}
    assert (await api.post("/v1/workflows", json=definition)).status_code == 201
    started = await api.post(
        "/v1/runs", json={"workflow": "wide", "input": {"items": [*range(12)]}}
    )
    assert started.status_code == 201, started.text
    run = await _finished(api, started.json()["id"])
    assert run["status"] == "completed", run
    assert run["tasks"][0]["progress"]["completed"] == 12


async def test_nul_characters_in_the_request_line_are_refused(api: httpx.AsyncClient) -> None:
    """NUL in a path is 400 on /v1 and 404 for a static file; in a query value 400; in a
    name that goes into a column 422; in JSON values it is kept and given back."""
    body = problem(await api.get("/v1/runs/%00"), 400, "invalid-parameter")
    assert body["parameter"] == "path"
    body = problem(await api.get("/v1/runs?workflow=a%00"), 400, "invalid-parameter")
    assert body["parameter"] == "query"
    problem(await api.get("/v1/workflows/a%00b"), 400)
    problem(await api.get("/ui/static/x%00.js"), 404)
    problem(await api.post("/v1/runs", json={"workflow": "ga\x00te"}), 422, "value-invalid")
    nul_schedule = {"name": "n\x00", "workflow": "gate", "cron": "0 3 * * *"}
    problem(await api.post("/v1/schedules", json=nul_schedule), 422, "schedule-invalid")

    started = await api.post("/v1/runs", json={"workflow": "gate", "input": {"a\x00": "x\x00y"}})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    sent = await api.post(f"/v1/runs/{run_id}/signals/go", json={"note": "\x00"})
    assert sent.status_code == 202, sent.text
    run = await _finished(api, run_id)
    assert run["input"] == {"a\x00": "x\x00y"}
    assert run["tasks"][0]["output"] == {"note": "\x00"}


async def test_date_times_that_overflow_with_their_offset_are_400(api: httpx.AsyncClient) -> None:
    """A created_after/created_before outside years 1-9999 once taken to UTC is a 400."""
    for name, value in (
        ("created_after", "0001-01-01T00:00:00+14:00"),
        ("created_before", "9999-12-31T23:59:59-14:00"),
    ):
        body = problem(await api.get("/v1/runs", params={name: value}), 400)
        assert body["parameter"] == name
    problem(
        await api.get("/v1/runs/counts", params={"created_after": "0001-01-01T00:00:00+01:00"}), 400
    )
    edge = await api.get("/v1/runs", params={"created_after": "0001-01-01T00:00:00Z"})
    assert edge.status_code == 200, edge.text


async def test_schedule_times_past_what_a_date_holds_are_422(api: httpx.AsyncClient) -> None:
    """A schedule whose start_at overflows once taken to UTC, comes so late that its first
    tick would pass year 9999, or whose interval is longer than a century is a 422 naming
    the field (each was a 500: OverflowError computing the first tick)."""
    hourly = {"workflow": "gate", "interval": "1h"}
    leap_mondays = {"workflow": "gate", "cron": "0 0 29 2 1"}
    refused = [
        (hourly, "start_at", "9999-12-31T23:59:59-14:00"),
        (leap_mondays, "start_at", "9999-12-31T00:00:00Z"),
        (hourly, "interval", "99999999999999d"),
        (hourly, "interval", 1e308),
        (hourly, "interval", 2**64),
    ]
    for n, (base, field, value) in enumerate(refused):
        schedule = {**base, "name": f"late-{n}", field: value}
        body = problem(await api.post("/v1/schedules", json=schedule), 422, "schedule-invalid")
        assert body["errors"][0]["path"] == field, body
    for n, base in enumerate((hourly, leap_mondays)):
        latest = {**base, "name": f"ok-{n}", "start_at": "8999-12-31T23:59:59+14:00"}
        created = await api.post(
            "/v1/schedules", json={**latest, "interval": "36500d"} if n == 0 else latest
        )
        assert created.status_code == 201, created.text


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(list(parts))).decode().rstrip("=")


async def test_forged_cursors_are_400(api: httpx.AsyncClient) -> None:
    """A cursor carrying a NUL, an overflowing date-time or an out-of-range number is an
    invalid cursor (400), not a driver error."""
    forged = [
        ("/v1/runs", _cursor("runs", "2020-01-01T00:00:00Z", "a\x00b")),
        ("/v1/runs", _cursor("runs", "0001-01-01T00:00:00+14:00", "a")),
        ("/v1/workflows", _cursor("workflows", "a\x00")),
        ("/v1/runs/x/events", _cursor("history", 2**70)),
        ("/v1/schedules", _cursor("schedules", "\x00")),
    ]
    for path, cursor in forged:
        problem(await api.get(path, params={"cursor": cursor}), 400, "invalid-cursor")


async def test_json_nested_past_the_limit_is_400(http: httpx.AsyncClient) -> None:
    """A body nested past limits.max_json_depth (64) is a 400 before decoding; 64 is fine,
    and brackets inside strings do not count."""
    deep = "[" * 990 + "]" * 990
    for path in ("/v1/workflows", "/v1/runs", "/v1/runs/r/signals/go"):
        body = '{"workflow": "order", "input": ' + deep + "}"
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        problem(response, 400, "json-too-deep")
        assert response.json()["maximum"] == 64
    await register(http)
    # 64 levels in all: the body object, then 63 nested lists, some brackets in a string.
    fits = '{"workflow": "order", "input": ' + "[" * 62 + '["[[[{{"]' + "]" * 62 + "}"
    response = await http.post(
        "/v1/runs", content=fits, headers={"content-type": "application/json"}
    )
    assert response.json().get("type") != "urn:treadle:problem:json-too-deep", response.text
    problem(response, 422, "input-invalid")


async def test_an_unknown_query_parameter_is_400_naming_it(http: httpx.AsyncClient) -> None:
    """`?label=foo` on a list is refused with the parameter's name, not ignored."""
    asked = [("/v1/runs", "label"), ("/v1/workflows", "tag"), ("/v1/runs/counts", "tag")]
    for path, name in asked:
        body = problem(await http.get(f"{path}?{name}=foo"), 400, "invalid-parameter")
        assert body["parameter"] == name
        assert "workflow" in body["detail"] or "limit" in body["detail"]
    known = "/v1/runs?workflow=order&status=running&limit=5&created_after=2020-01-01T00:00:00Z"
    assert (await http.get(known)).status_code == 200
