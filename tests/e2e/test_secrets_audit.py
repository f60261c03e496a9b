"""Secrets audit: a `${ secret.NAME }` value reaches the callee and nowhere else.

One `treadle serve` (SQLite, debug logging) runs http tasks whose headers and JSON body
use the secret, as a plain task, as map items, and against a target that answers 500
echoing the request back; then every surface an operator or a caller can read is
searched for the value: the run, its events, the map's items, the run list, /metrics and
every line the server wrote.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_core_flows import register, tasks_by_id
from tests.integration.worker.echo_server import EchoServer, echo_server

pytestmark = pytest.mark.e2e
# Quotes, a slash, a plus and spaces: JSON and URL encodings change them, so a value
# echoed back inside JSON (or a JSON string inside JSON) must be redacted in those forms.
SECRET = 'audit S3cret "9c41"/e7+x'
ONCE = {"max_attempts": 1}


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """The loopback server the workflows call."""
    with echo_server() as server:
        yield server


def _request(url: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "url": url,
        "headers": {"Authorization": "Bearer ${ secret.TOKEN }", "X-Token": "${ secret.TOKEN }"},
        "json": {"token": "${ secret.TOKEN }", "nested": {"t": "key=${ secret.TOKEN }"}},
    }


def _workflows(echo: EchoServer) -> list[dict[str, Any]]:
    ok = {
        "name": "audit-ok",
        "tasks": {
            "call": {"type": "http", "request": _request(f"{echo.url}/echo"), "retry": ONCE},
            "each": {
                "type": "map",
                "items": "${ `[1, 2]` }",
                "task": {"type": "http", "request": _request(f"{echo.url}/echo"), "retry": ONCE},
            },
        },
        "output": "${ tasks.call.output }",
    }
    failing = {
        "name": "audit-500",
        "tasks": {
            "call": {"type": "http", "request": _request(f"{echo.url}/echo/500"), "retry": ONCE}
        },
    }
    return [ok, failing]


def _surfaces(server: Server, runs: list[dict[str, Any]]) -> dict[str, str]:
    """Every text a caller or operator can read about these runs."""
    texts = {"run list": server.http.get("/v1/runs", params={"limit": 100}).text}
    for run in runs:
        rid = run["id"]
        texts[f"run {rid}"] = server.http.get(f"/v1/runs/{rid}").text
        texts[f"events {rid}"] = server.http.get(f"/v1/runs/{rid}/events").text
        for task in run["tasks"]:
            if task["type"] == "map":
                items = server.http.get(f"/v1/runs/{rid}/tasks/{task['task_id']}/items")
                assert items.status_code == 200, items.text
                texts[f"items {rid}"] = items.text
    texts["metrics"] = server.http.get("/metrics").text
    texts["server output"] = server.log.read_text(errors="replace")
    return texts


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_secret_value_appears_on_no_surface(
    serve: Callable[..., Server], echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Headers and JSON carry the secret to the callee; no API answer, metric or log line has it."""
    monkeypatch.setenv("TREADLE_HTTP__ALLOW", "127.0.0.1/32")
    monkeypatch.setenv("TREADLE_SECRET_TOKEN", SECRET)
    monkeypatch.setenv("TREADLE_LOG__LEVEL", "debug")
    server = serve()
    for definition in _workflows(echo):
        register(server, definition)
    runs = []
    for name in ("audit-ok", "audit-500"):
        response = server.start(name, {})
        assert response.status_code == 201, response.text
        runs.append(server.wait_for_run(response.json()["id"]))
    ok, failed = runs
    assert ok["status"] == "completed", ok
    assert failed["status"] == "failed", failed
    # The secret did travel: 1 call, 2 map items and the 500 target all received it.
    assert len(echo.received) == 4
    for received in echo.received:
        assert received.headers["Authorization"] == f"Bearer {SECRET}"
        assert received.headers["X-Token"] == SECRET
        assert json.loads(received.body)["nested"]["t"] == f"key={SECRET}"
    error = tasks_by_id(failed)["call"]["error"]
    assert error["type"] == "HttpStatusError", error
    assert "[redacted]" in error["message"]
    assert "key=[redacted]" in error["message"], "the echoed body is in the message, redacted"
    for surface, text in _surfaces(server, runs).items():
        assert SECRET not in text, f"the secret leaked into {surface}"
    assert "${ secret.TOKEN }" in server.http.get(f"/v1/runs/{ok['id']}").text
