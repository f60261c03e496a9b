"""The `http` task type end to end: `treadle serve` calling a loopback echo server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_core_flows import register, tasks_by_id
from tests.integration.worker.echo_server import EchoServer, echo_server

pytestmark = pytest.mark.e2e
SECRET = "e2e-Secret-Value-7f3a"
FAST_RETRY = {"max_attempts": 3, "initial_interval": "100ms", "backoff": 1.0}


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """The server the workflows call."""
    with echo_server() as server:
        yield server


def _call(name: str, request: dict[str, Any], **task: Any) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": {"call": {"type": "http", "request": request, "retry": FAST_RETRY, **task}},
        "output": "${ tasks.call.output }",
    }


def _run(server: Server, workflow: str) -> dict[str, Any]:
    response = server.start(workflow, {})
    assert response.status_code == 201, response.text
    return server.wait_for_run(response.json()["id"])


def test_retries_5xx_and_timeouts_but_not_4xx(
    serve: Callable[..., Server], echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 twice then 200 completes on attempt 3; a timeout is retried; a 404 fails at once."""
    monkeypatch.setenv("TREADLE_HTTP__ALLOW", "127.0.0.1/32")
    server = serve()
    register(server, _call("flaky", {"url": f"{echo.url}/flaky/a?fail=2"}))
    register(server, _call("missing", {"url": f"{echo.url}/status/404"}))
    register(
        server,
        _call("slow", {"url": f"{echo.url}/slow?seconds=1", "timeout": "200ms"}),
    )
    flaky = _run(server, "flaky")
    assert flaky["status"] == "completed", flaky
    assert flaky["output"]["json"] == {"ok": True}
    assert tasks_by_id(flaky)["call"]["attempt"] == 3
    missing = _run(server, "missing")
    assert missing["status"] == "failed", missing
    call = tasks_by_id(missing)["call"]
    assert (call["attempt"], call["error"]["type"]) == (1, "HttpStatusError")
    slow = _run(server, "slow")
    assert slow["status"] == "failed", slow
    call = tasks_by_id(slow)["call"]
    assert (call["attempt"], call["error"]["type"]) == (3, "HttpTimeout")


def test_loopback_is_refused_without_an_allowlist(
    serve: Callable[..., Server], echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default a loopback target fails as SsrfBlocked, not retried, and nothing is sent."""
    monkeypatch.delenv("TREADLE_HTTP__ALLOW", raising=False)
    server = serve()
    register(server, _call("internal", {"url": f"{echo.url}/echo"}))
    run = _run(server, "internal")
    assert run["status"] == "failed", run
    call = tasks_by_id(run)["call"]
    assert (call["attempt"], call["error"]["type"]) == (1, "SsrfBlocked")
    assert echo.received == []


def test_secrets_reach_the_server_but_not_history_api_or_logs(
    serve: Callable[..., Server], echo: EchoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The callee gets the value; the run, its events and the server log only the reference."""
    monkeypatch.setenv("TREADLE_HTTP__ALLOW", "127.0.0.1/32")
    monkeypatch.setenv("TREADLE_SECRET_API_TOKEN", SECRET)
    server = serve()
    request = {
        "method": "POST",
        "url": f"{echo.url}/echo",
        "headers": {"Authorization": "Bearer ${ secret.API_TOKEN }"},
        "json": {"token": "${ secret.API_TOKEN }", "n": 1},
    }
    register(server, _call("secretive", request))
    run = _run(server, "secretive")
    assert run["status"] == "completed", run
    assert echo.received[0].headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET in echo.received[0].body.decode()
    events = server.http.get(f"/v1/runs/{run['id']}/events").text
    shown = server.http.get(f"/v1/runs/{run['id']}").text
    for text in (events, shown, server.tail(lines=10_000)):
        assert SECRET not in text
    assert "${ secret.API_TOKEN }" in shown
    assert run["output"]["json"]["headers"]["authorization"] == "Bearer [redacted]"
