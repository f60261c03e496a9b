"""Bad requests of every kind are problem+json 4xx answers, and nothing reaches a 500."""

from __future__ import annotations

import logging

import httpx
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import problem, register

pytestmark = pytest.mark.anyio

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("path", ["/v1/workflows", "/v1/runs"])
async def test_malformed_json_is_400(http: httpx.AsyncClient, path: str) -> None:
    """A body that is not JSON is a 400 that says so."""
    response = await http.post(path, content=b'{"name": ', headers=JSON)
    body = problem(response, 400, "malformed-json")
    assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml"]
)
async def test_a_body_that_is_not_json_is_415(http: httpx.AsyncClient, content_type: str) -> None:
    """A body sent as another media type is refused with 415, naming the type."""
    response = await http.post(
        "/v1/runs", content=b'{"workflow": "order"}', headers={"content-type": content_type}
    )
    assert content_type in problem(response, 415, "unsupported-media-type")["detail"]


async def test_a_body_without_a_content_type_is_415(http: httpx.AsyncClient) -> None:
    """A body with no content type at all is not assumed to be JSON."""
    response = await http.post("/v1/workflows", content=b"{}")
    assert "content-type" not in response.request.headers
    problem(response, 415, "unsupported-media-type")


async def test_a_json_suffix_media_type_is_accepted(http: httpx.AsyncClient) -> None:
    """`application/*+json` bodies, and JSON with a charset, are JSON."""
    for content_type in ("application/vnd.treadle+json", "application/json; charset=utf-8"):
        response = await http.post(
            "/v1/runs", content=b'{"workflow": "ghost"}', headers={"content-type": content_type}
        )
        problem(response, 404, "workflow-not-found")


async def test_an_oversize_body_is_413(http: httpx.AsyncClient) -> None:
    """A body over api.max_body_bytes is refused with 413 and the limit."""
    huge = b'{"name": "' + b"x" * (64 * 1024) + b'"}'
    body = problem(await http.post("/v1/workflows", content=huge, headers=JSON), 413)
    assert body["type"] == "urn:treadle:problem:body-too-large"
    assert str(64 * 1024) in body["detail"]


async def test_an_oversize_signal_payload_is_413(http: httpx.AsyncClient) -> None:
    """The body cap holds on every route that takes a body."""
    await register(http)
    huge = b'"' + b"x" * (64 * 1024) + b'"'
    response = await http.post("/v1/runs/any/signals/s", content=huge, headers=JSON)
    problem(response, 413, "body-too-large")


async def test_an_unknown_route_is_a_404_problem(http: httpx.AsyncClient) -> None:
    """Routes that do not exist answer problem+json too."""
    body = problem(await http.get("/v2/runs"), 404)
    assert body["type"] == "about:blank"
    assert "/v2/runs" in body["detail"]


async def test_a_wrong_method_is_a_405_problem_with_allow(http: httpx.AsyncClient) -> None:
    """A method the route does not serve is 405 with the Allow header kept."""
    response = await http.delete("/v1/runs")
    problem(response, 405)
    assert "GET" in response.headers["allow"]


async def test_an_unexpected_error_is_a_500_problem_without_internals(
    http: httpx.AsyncClient, engine: FakeEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the engine is logged with its traceback and answered without its details."""

    async def broken(run_id: str, *bound: int) -> None:
        raise RuntimeError("secret database password in a message")

    # The route reads a run bounded (large values left in the store); break both reads.
    engine.get_run = broken  # type: ignore[method-assign,assignment]
    engine.get_run_bounded = broken  # type: ignore[method-assign,assignment]
    with caplog.at_level(logging.ERROR, logger="treadle.api"):
        response = await http.get("/v1/runs/x")
    body = problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "logged" in body["detail"]
    assert any(record.exc_info for record in caplog.records)


BAD_REQUESTS = [
    ("POST", "/v1/workflows", b"{", JSON),
    ("POST", "/v1/workflows", b"[]", JSON),
    ("POST", "/v1/workflows", b'"x"', JSON),
    ("POST", "/v1/workflows", b"null", JSON),
    ("POST", "/v1/workflows", b'{"name": 1, "tasks": []}', JSON),
    ("POST", "/v1/workflows", b'{"name": "w", "tasks": {"a": {"after": ["a"]}}}', JSON),
    ("POST", "/v1/workflows", b'{"name": "w", "tasks": {"a": {"type": "teleport"}}}', JSON),
    ("POST", "/v1/workflows", b'{"name": "w", "tasks": {"a": {"timeout": "soon"}}}', JSON),
    ("POST", "/v1/workflows", b'{"name": "w", "tasks": {}, "input_schema": {"type": 3}}', JSON),
    ("POST", "/v1/workflows", b"\xff\xfe", JSON),
    ("POST", "/v1/runs", b'{"workflow": null}', JSON),
    ("POST", "/v1/runs", b'{"workflow": "order", "version": -1}', JSON),
    ("POST", "/v1/runs", b'{"workflow": "order", "version": 1.5}', JSON),
    ("POST", "/v1/runs", b'{"workflow": "order", "input": {"sku": 5}}', JSON),
    ("POST", "/v1/runs", b"{}", {"content-type": "multipart/form-data; boundary=x"}),
    ("GET", "/v1/runs?limit=1e9", None, {}),
    ("GET", "/v1/runs?limit=99999999999999999999999", None, {}),
    ("GET", "/v1/runs?status=", None, {}),
    ("GET", "/v1/runs?cursor=%00", None, {}),
    ("GET", "/v1/workflows?limit=0", None, {}),
    ("GET", "/v1/workflows/order/versions/0", None, {}),
    ("GET", "/v1/workflows/order/versions/-5", None, {}),
    ("GET", "/v1/workflows/order/versions/99999999999999999999", None, {}),
    ("GET", "/v1/runs/%20", None, {}),
    ("POST", "/v1/runs/x/cancel", b'"why"', JSON),
    ("POST", "/v1/runs/x/signals/s", b"{nope", JSON),
]


@pytest.mark.parametrize(("method", "path", "content", "headers"), BAD_REQUESTS)
async def test_no_bad_request_hits_a_500(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    content: bytes | None,
    headers: dict[str, str],
) -> None:
    """Each of these mistakes is a 4xx problem+json answer, never a 500."""
    await register(http)
    response = await http.request(method, path, content=content, headers=headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
