"""The API under test: `create_app` wired to in-process ports, spoken to over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from tests.integration.api._fakes import FakeCheck, FakeEngine
from treadle.config import ApiSettings
from treadle.modules.api import create_app

ORDER: dict[str, Any] = {
    "name": "order",
    "input_schema": {
        "type": "object",
        "required": ["sku"],
        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
    },
    "tasks": {
        "reserve": {"handler": "inventory.reserve", "input": {"sku": "${ input.sku }"}},
        "ship": {"after": ["reserve"], "handler": "shipping.create"},
    },
}


@pytest.fixture
def anyio_backend() -> str:
    """Litestar's test transport and the engine's drivers run on asyncio."""
    return "asyncio"


@pytest.fixture
def engine() -> FakeEngine:
    """The ports behind the API."""
    return FakeEngine()


@pytest.fixture
def checks() -> list[FakeCheck]:
    """Readiness checks; tests append failing ones."""
    return [FakeCheck("database")]


@pytest.fixture
def settings() -> ApiSettings:
    """Small limits so the edges are cheap to reach."""
    return ApiSettings(max_body_bytes=64 * 1024, max_page_size=50, default_page_size=10)


def asgi_client(
    engine: FakeEngine, checks: Sequence[FakeCheck], settings: ApiSettings
) -> httpx.AsyncClient:
    """An HTTP client talking in process to an app wired to these ports."""
    app = create_app(
        run_control=engine, workflows=engine, runs=engine, health=checks, settings=settings
    )
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://treadle.test")


@pytest.fixture
async def http(
    engine: FakeEngine, checks: list[FakeCheck], settings: ApiSettings
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in process."""
    async with asgi_client(engine, checks, settings) as client:
        yield client


def problem(response: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    """Check an answer is an RFC 9457 problem with this status (and type); return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    if kind is not None:
        assert body["type"] == f"urn:treadle:problem:{kind}"
    return body


async def register(http: httpx.AsyncClient, definition: dict[str, Any] = ORDER) -> None:
    """Register a definition, failing the test if the API refuses it."""
    response = await http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text


async def start(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    """Start a run of `order`, failing the test if the API refuses it."""
    response = await http.post("/v1/runs", json={"workflow": "order", **body})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run
