"""A keyless loopback API refuses what a web page could send: a foreign `Host` (DNS
rebinding) and writes without a JSON content type or `X-Treadle-Request` (CSRF)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.api._fakes import FakeCheck, FakeEngine
from tests.integration.api.conftest import ORDER, problem
from tests.integration.api.test_auth import MemoryKeys, Ticks, bearer
from treadle.client import ApiError, AsyncClient
from treadle.config import ApiSettings, AuthSettings
from treadle.domain.api_keys import Scope
from treadle.modules.api import Authenticator, create_app
from treadle.modules.api._open_mode import host_allowed, host_name

pytestmark = pytest.mark.anyio


def _app(keys: MemoryKeys, *, loopback: bool = True, allowed: tuple[str, ...] = ()) -> Any:
    engine = FakeEngine()
    auth = Authenticator(
        keys, AuthSettings(), loopback=loopback, allowed_hosts=allowed, monotonic=Ticks()
    )
    return create_app(
        run_control=engine,
        workflows=engine,
        runs=engine,
        health=[FakeCheck("database")],
        settings=ApiSettings(),
        auth=auth,
    )


def _http(app: Any, host: str = "127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


@pytest.mark.parametrize(
    ("header", "name"),
    [("localhost:8000", "localhost"), ("[::1]:8000", "::1"), ("127.0.0.1", "127.0.0.1"),
     ("Evil.Example:80", "evil.example"), ("::1", "::1")],
)  # fmt: skip
def test_host_name_drops_the_port_and_brackets(header: str, name: str) -> None:
    """A Host header's name, without port or IPv6 brackets, lower case."""
    assert host_name(header) == name


def test_loopback_names_and_configured_ones_are_allowed() -> None:
    """localhost, 127.0.0.1 (any 127/8), [::1] and `api.allowed_hosts` pass; others do not."""
    for ok in ("localhost", "LOCALHOST:8000", "127.0.0.1:8000", "127.1.2.3", "[::1]:9"):
        assert host_allowed(ok, ())
    for bad in ("evil.example", "evil.example:8000", "10.0.0.1", "localhost.evil.example"):
        assert not host_allowed(bad, ())
    assert host_allowed("treadle.lan:8000", ("treadle.lan",))


@pytest.mark.parametrize("host", ["rebind.evil.example:8000", "192.168.1.20:8000"])
async def test_a_foreign_host_is_403_naming_it(host: str) -> None:
    """With no keys on loopback, a request naming another host is a 403 problem naming it,
    reads and writes alike."""
    async with _http(_app(MemoryKeys()), host) as http:
        body = problem(await http.get("/v1/runs"), 403, "host-not-allowed")
        assert body["host"] == host.rpartition(":")[0]
        assert "api.allowed_hosts" in body["detail"]
        problem(await http.post("/v1/workflows", json=ORDER), 403, "host-not-allowed")


async def test_a_configured_host_and_loopback_names_are_served() -> None:
    """`api.allowed_hosts` names and every loopback spelling are served."""
    app = _app(MemoryKeys(), allowed=("treadle.lan",))
    for host in ("treadle.lan:8000", "localhost:8000", "[::1]:8000", "127.0.0.1"):
        async with _http(app, host) as http:
            assert (await http.get("/v1/runs")).status_code == 200, host


async def test_with_keys_a_key_protects_and_any_host_is_served() -> None:
    """Once keys are required the Host is not checked (a page has no key to send)."""
    keys = MemoryKeys()
    token = keys.add(Scope.READ)
    async with _http(_app(keys), "treadle.example.com") as http:
        assert (await http.get("/v1/runs", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
async def test_a_write_a_cross_site_page_could_send_is_refused(content_type: str | None) -> None:
    """A POST with a form, text or no content type (what a page sends cross-site without
    a preflight) is a 403 problem, and nothing is registered."""
    engine_app = _app(MemoryKeys())
    headers = {"content-type": content_type} if content_type else {}
    body = b'{"name": "order", "tasks": {}}' if content_type else None
    async with _http(engine_app) as http:
        response = await http.post("/v1/workflows", content=body, headers=headers)
        problem(response, 403, "cross-site-request")
        cancel = await http.post("/v1/runs/r1/cancel")
        problem(cancel, 403, "cross-site-request")
        assert (await http.get("/v1/workflows")).json()["items"] == []


async def test_json_or_the_header_lets_a_write_through() -> None:
    """A JSON content type, or `X-Treadle-Request` on a POST without a body, passes."""
    async with _http(_app(MemoryKeys())) as http:
        assert (await http.post("/v1/workflows", json=ORDER)).status_code == 201
        run = await http.post("/v1/runs", json={"workflow": "order", "input": {"sku": "a"}})
        run_id = run.json()["id"]
        cancel = await http.post(f"/v1/runs/{run_id}/cancel", headers={"X-Treadle-Request": "1"})
        assert cancel.status_code == 202, cancel.text


async def test_the_python_client_sends_acceptable_writes() -> None:
    """The client (used by the CLI) sends writes with and without a body that pass."""
    app = _app(MemoryKeys())
    async with AsyncClient("http://127.0.0.1:8000", transport=httpx.ASGITransport(app=app)) as c:
        await c.register_workflow(ORDER)
        run, _ = await c.start_run("order", {"sku": "a"})
        with pytest.raises(ApiError) as refused:  # a POST without a body reaches the route
            await c.retry_run(run.id)  # (a running run has nothing to retry: 409, not 403)
        assert refused.value.status == 409
        cancelled = await c.cancel_run(run.id)
        assert cancelled.id == run.id
