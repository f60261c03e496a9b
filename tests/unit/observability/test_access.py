"""Access lines: one per request, with its facts; polling and scrapes at debug."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from tests.unit.observability.conftest import LogCapture
from treadle.observability import access_logged
from treadle.observability._access import access_level
from treadle.observability._asgi import Receive, Scope, Send

pytestmark = pytest.mark.anyio

SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers 200, or 404 under /missing."""
    status = 404 if str(scope["path"]).startswith("/missing") else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _access_lines(capture: LogCapture) -> list[dict[str, Any]]:
    # At debug, asyncio says which selector it uses: only this module's lines count.
    return [line for line in capture.lines() if line["logger"] == "treadle.access"]


async def _get(path: str, headers: dict[str, str] | None = None, method: str = "GET") -> None:
    transport = httpx.ASGITransport(app=access_logged(_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        await client.request(method, path, headers=headers)


async def test_a_request_is_one_line_with_its_facts(logs: LogCapture) -> None:
    """Method, path, query, status, duration and client, from the treadle.access logger."""
    await _get("/v1/runs?status=failed&limit=5")

    [line] = _access_lines(logs)
    assert line["logger"] == "treadle.access"
    assert line["message"] == "http request"
    assert line["level"] == "info"
    assert (line["http_method"], line["http_path"], line["http_status"]) == ("GET", "/v1/runs", 200)
    assert line["http_query"] == "status=failed&limit=5"
    assert line["duration_ms"] >= 0
    assert line["client"].startswith("127.0.0.1:")


async def test_scrapes_probes_and_the_dashboards_polling_are_left_out_at_info() -> None:
    """At the default level, /metrics, the probes and same-origin reads write nothing;
    a caller's request, a failure and a dashboard's write still do."""
    capture = LogCapture()
    capture.configure(format="json")  # level info
    await _get("/metrics")
    await _get("/readyz")
    await _get("/healthz")
    await _get("/v1/runs/counts", SAME_ORIGIN)
    await _get("/v1/runs")
    await _get("/missing", SAME_ORIGIN)
    await _get("/v1/runs/r1/cancel", SAME_ORIGIN, method="POST")

    written = [(line["http_method"], line["http_path"]) for line in _access_lines(capture)]
    assert written == [("GET", "/v1/runs"), ("GET", "/missing"), ("POST", "/v1/runs/r1/cancel")]


async def test_polling_lines_are_written_at_debug(logs: LogCapture) -> None:
    """The quiet lines are still there for `log.level = debug`, marked debug."""
    await _get("/metrics")
    await _get("/ui/static/app.css", SAME_ORIGIN)

    assert [(line["level"], line["http_path"]) for line in _access_lines(logs)] == [
        ("debug", "/metrics"),
        ("debug", "/ui/static/app.css"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "status", "headers", "level"),
    [
        ("GET", "/metrics", 200, {}, logging.DEBUG),
        ("HEAD", "/healthz", 200, {}, logging.DEBUG),
        ("GET", "/readyz", 503, {}, logging.INFO),
        ("GET", "/v1/runs", 200, {b"sec-fetch-site": b"same-origin"}, logging.DEBUG),
        ("GET", "/v1/runs", 200, {b"sec-fetch-site": b"cross-site"}, logging.INFO),
        ("GET", "/v1/runs", 200, {}, logging.INFO),
        ("POST", "/v1/runs", 201, {b"sec-fetch-site": b"same-origin"}, logging.INFO),
        ("POST", "/metrics", 405, {}, logging.INFO),
    ],
)
def test_access_level_rules(
    method: str, path: str, status: int, headers: dict[bytes, bytes], level: int
) -> None:
    """Only successful reads that poll are debug."""
    assert access_level(method, path, status, headers) == level
