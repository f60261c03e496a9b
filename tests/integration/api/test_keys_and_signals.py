"""An Idempotency-Key reused for another request is a conflict, and a signal the run's
definition does not accept is not found (real engine on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api._engines import engine_client
from tests.integration.api.conftest import problem

pytestmark = pytest.mark.anyio

GATE: dict[str, Any] = {
    "name": "gate",
    "tasks": {
        "wait": {"type": "signal", "signal": "go"},
        "later": {"after": ["wait"], "type": "signal"},
    },
}
INBOX: dict[str, Any] = {
    "name": "inbox",
    "signals": {"names": ["note"]},
    "tasks": {"wait": {"type": "signal", "signal": "go"}},
}
ANY: dict[str, Any] = {
    "name": "anything",
    "signals": {"accept_any": True},
    "tasks": {"wait": {"type": "signal", "signal": "go"}},
}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The API over a running engine, with the workflows above registered."""
    async with engine_client(request.param, tmp_path) as client:
        for definition in (GATE, INBOX, ANY):
            response = await client.post("/v1/workflows", json=definition)
            assert response.status_code == 201, response.text
        yield client


async def _start(api: httpx.AsyncClient, key: str | None = None, **body: Any) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key is not None else {}
    return await api.post("/v1/runs", json={"workflow": "gate", **body}, headers=headers)


async def test_a_reused_key_with_another_request_is_409_naming_the_run(
    api: httpx.AsyncClient,
) -> None:
    """The same key and request is the same run (200); another workflow, version or input
    is a 409 that names the existing run and what differs."""
    first = await _start(api, "k1", input={"a": 1, "b": [1, 2]})
    assert first.status_code == 201, first.text
    run_id = first.json()["id"]
    again = await _start(api, "k1", input={"b": [1, 2], "a": 1})
    assert (again.status_code, again.json()["id"]) == (200, run_id)
    cases = [
        ({"input": {"a": 2, "b": [1, 2]}}, "input"),
        ({"input": None}, "input"),
        ({"workflow": "inbox", "input": {"a": 1, "b": [1, 2]}}, "workflow"),
        ({"version": 1, "input": {"a": 1, "b": [1, 2]}}, None),
    ]
    for body, differs in cases:
        response = await _start(api, "k1", **body)
        if differs is None:
            assert response.status_code == 200, response.text
            continue
        conflict = problem(response, 409, "idempotency-key-reused")
        assert (conflict["run_id"], conflict["differs"]) == (run_id, differs)
        assert run_id in conflict["detail"]
    listed = (await api.get("/v1/runs", params={"idempotency_key": "k1"})).json()["items"]
    assert [r["id"] for r in listed] == [run_id]


async def test_a_signal_the_definition_does_not_accept_is_404(api: httpx.AsyncClient) -> None:
    """A name no signal task waits for is 404 listing the names the run accepts; a name a
    later task waits for is buffered (202), as are `signals.names` and, with
    `signals.accept_any`, any name."""
    run_id = (await _start(api)).json()["id"]
    body = problem(await api.post(f"/v1/runs/{run_id}/signals/nope", json={}), 404)
    assert body["type"] == "urn:treadle:problem:signal-not-accepted"
    assert (body["signal"], body["accepted"]) == ("nope", ["go", "later"])
    later = await api.post(f"/v1/runs/{run_id}/signals/later", json={"early": True})
    assert later.status_code == 202, later.text
    assert (await api.post(f"/v1/runs/{run_id}/signals/go", json={})).status_code == 202
    run = (await api.get(f"/v1/runs/{run_id}", params={"wait": 15})).json()
    assert run["status"] == "completed"
    assert run["tasks"][1]["output"] == {"early": True}
    problem(await api.post("/v1/runs/missing/signals/go", json={}), 404, "run-not-found")

    inbox = (await api.post("/v1/runs", json={"workflow": "inbox"})).json()["id"]
    assert (await api.post(f"/v1/runs/{inbox}/signals/note", json=1)).status_code == 202
    problem(await api.post(f"/v1/runs/{inbox}/signals/other", json=1), 404)
    anything = (await api.post("/v1/runs", json={"workflow": "anything"})).json()["id"]
    assert (await api.post(f"/v1/runs/{anything}/signals/whatever", json=1)).status_code == 202


async def test_signals_options_are_validated(api: httpx.AsyncClient) -> None:
    """`signals.names` are names like any other, and `signals` takes no unknown field."""
    bad_name = {**INBOX, "name": "bad", "signals": {"names": ["ok", "not ok"]}}
    body = problem(await api.post("/v1/workflows", json=bad_name), 422, "definition-invalid")
    assert body["errors"][0]["path"] == "signals.names[1]"
    unknown = {**INBOX, "name": "bad", "signals": {"accept": True}}
    problem(await api.post("/v1/workflows", json=unknown), 422, "definition-invalid")
