"""API keys over HTTP: 401 without a valid key, 403 without the scope, open operations."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.integration.api._fakes import FakeCheck, FakeEngine
from tests.integration.api.conftest import ORDER, problem
from treadle.config import ApiSettings, AuthSettings
from treadle.domain.api_keys import ApiKey, ApiKeyNotFound, Scope, new_key
from treadle.domain.auth_policy import LOCKED
from treadle.modules.api import Authenticator, create_app

pytestmark = pytest.mark.anyio
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class MemoryKeys:
    """An `ApiKeyStore` over a dict, counting lookups so caching can be seen."""

    def __init__(self) -> None:
        self.keys: dict[str, ApiKey] = {}
        self.lookups = 0
        self.touched: dict[str, datetime] = {}

    def add(self, *scopes: Scope) -> str:
        made = new_key("test", scopes, T0)
        self.keys[made.record.id] = made.record
        return made.token

    async def create_api_key(self, key: ApiKey) -> None:
        self.keys[key.id] = key

    async def get_api_key(self, key_id: str) -> ApiKey:
        self.lookups += 1
        if key_id not in self.keys:
            raise ApiKeyNotFound(key_id)
        return self.keys[key_id]

    async def list_api_keys(self) -> list[ApiKey]:
        return list(self.keys.values())

    async def revoke_api_key(self, key_id: str, at: datetime) -> ApiKey:
        key = await self.get_api_key(key_id)
        self.keys[key_id] = ApiKey(**{**_fields(key), "revoked_at": at})
        return self.keys[key_id]

    async def count_active_api_keys(self) -> int:
        return sum(k.active for k in self.keys.values())

    async def count_api_keys(self) -> int:
        return len(self.keys)

    async def touch_api_keys(self, used: Mapping[str, datetime]) -> None:
        self.touched.update(used)


def _fields(key: ApiKey) -> dict[str, Any]:
    return {f: getattr(key, f) for f in key.__struct_fields__}


class Ticks:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> MemoryKeys:
    """The key store behind the API."""
    return MemoryKeys()


@pytest.fixture
def ticks() -> Ticks:
    """The authenticator's clock."""
    return Ticks()


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://localhost")


def _app(keys: MemoryKeys, ticks: Ticks, *, loopback: bool = True, **auth: Any) -> Any:
    engine = FakeEngine()
    authenticator = Authenticator(
        keys, AuthSettings(**auth), loopback=loopback, monotonic=ticks, now=lambda: T0
    )
    return create_app(
        run_control=engine,
        workflows=engine,
        runs=engine,
        health=[FakeCheck("database")],
        settings=ApiSettings(),
        auth=authenticator,
    )


@pytest.fixture
async def http(keys: MemoryKeys, ticks: Ticks) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API whose keys are on (mode `keys`)."""
    async with _client(_app(keys, ticks, mode="keys")) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    """The header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


async def test_no_key_is_401_with_a_bearer_challenge(http: httpx.AsyncClient) -> None:
    """A request without a key is a 401 problem that names the Bearer scheme."""
    response = await http.get("/v1/runs")
    body = problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization: Bearer" in body["detail"]


@pytest.mark.parametrize(
    "header",
    [
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer not-a-key",
        "Bearer trd_0123456789ab_" + "x" * 43,
    ],
)
async def test_malformed_or_unknown_keys_are_401(http: httpx.AsyncClient, header: str) -> None:
    """Another scheme, a malformed key or an unknown id are all 401."""
    problem(await http.get("/v1/workflows", headers={"Authorization": header}), 401)


async def test_a_wrong_secret_for_a_real_id_is_401(
    http: httpx.AsyncClient, keys: MemoryKeys
) -> None:
    """The right id with another secret does not authenticate."""
    token = keys.add(Scope.ADMIN)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    body = problem(await http.get("/v1/runs", headers=bearer(forged)), 401)
    assert body["detail"] == "the API key is not valid"


async def test_read_scope_reads_but_cannot_write(http: httpx.AsyncClient, keys: MemoryKeys) -> None:
    """A read key lists runs (200) and is refused starting one (403 naming the scope)."""
    token = keys.add(Scope.READ)
    assert (await http.get("/v1/runs", headers=bearer(token))).status_code == 200
    assert (await http.get("/metrics", headers=bearer(token))).status_code == 200
    response = await http.post("/v1/workflows", json=ORDER, headers=bearer(token))
    body = problem(response, 403, "forbidden")
    assert body["scope"] == "write"


async def test_write_scope_registers_and_starts(http: httpx.AsyncClient, keys: MemoryKeys) -> None:
    """A write key registers a workflow, starts a run and cancels it."""
    token = keys.add(Scope.WRITE)
    assert (await http.post("/v1/workflows", json=ORDER, headers=bearer(token))).status_code == 201
    started = await http.post(
        "/v1/runs", json={"workflow": "order", "input": {"sku": "a"}}, headers=bearer(token)
    )
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    cancel = await http.post(f"/v1/runs/{run_id}/cancel", headers=bearer(token))
    assert cancel.status_code == 202


async def test_admin_scope_may_do_everything(http: httpx.AsyncClient, keys: MemoryKeys) -> None:
    """An admin key reads and writes."""
    token = keys.add(Scope.ADMIN)
    assert (await http.post("/v1/workflows", json=ORDER, headers=bearer(token))).status_code == 201
    assert (await http.get("/v1/workflows/order", headers=bearer(token))).status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/schema/openapi.json", "/schema/assets/swagger-ui.css", "/ui", "/"],
)
async def test_operations_schema_and_ui_pages_stay_open(http: httpx.AsyncClient, path: str) -> None:
    """Probes, the OpenAPI document, the docs page's files, the dashboard page and the root
    (a redirect to it) need no key."""
    response = await http.get(path, follow_redirects=True)
    assert response.status_code == 200


async def test_a_revoked_key_stops_working_within_the_cache_bound(
    http: httpx.AsyncClient, keys: MemoryKeys, ticks: Ticks
) -> None:
    """Lookups are cached (one store read for many requests) until `cache_seconds` pass."""
    token = keys.add(Scope.READ)
    for _ in range(5):
        assert (await http.get("/v1/runs", headers=bearer(token))).status_code == 200
    assert keys.lookups == 1
    await keys.revoke_api_key(next(iter(keys.keys)), T0)
    ticks.now += 5.0
    body = problem(await http.get("/v1/runs", headers=bearer(token)), 401)
    assert "revoked" in body["detail"]


async def test_last_use_is_written_in_batches(
    http: httpx.AsyncClient, keys: MemoryKeys, ticks: Ticks
) -> None:
    """Use is recorded in memory and written once the interval has passed."""
    token = keys.add(Scope.READ)
    await http.get("/v1/runs", headers=bearer(token))
    assert keys.touched == {}
    ticks.now += 61
    await http.get("/v1/runs", headers=bearer(token))
    assert keys.touched == {next(iter(keys.keys)): T0}


async def test_auto_mode_on_loopback_is_open_until_a_key_exists(
    keys: MemoryKeys, ticks: Ticks
) -> None:
    """auto: no keys on loopback means open; once a key exists, keys are required."""
    async with _client(_app(keys, ticks, mode="auto")) as http:
        assert (await http.get("/v1/runs")).status_code == 200
        keys.add(Scope.READ)
        ticks.now += 5.0
        problem(await http.get("/v1/runs"), 401)


async def test_auto_mode_off_loopback_requires_keys(keys: MemoryKeys, ticks: Ticks) -> None:
    """auto on a public address requires a key even before any exists."""
    async with _client(_app(keys, ticks, loopback=False)) as http:
        problem(await http.get("/v1/runs"), 401)


async def test_off_mode_and_open_metrics(keys: MemoryKeys, ticks: Ticks) -> None:
    """mode off lets everything through; open_metrics opens /metrics alone."""
    keys.add(Scope.READ)
    async with _client(_app(keys, ticks, mode="off")) as http:
        assert (await http.post("/v1/workflows", json=ORDER)).status_code == 201
    async with _client(_app(keys, ticks, mode="keys", open_metrics=True)) as http:
        assert (await http.get("/metrics")).status_code == 200
        problem(await http.get("/v1/runs"), 401)


async def test_the_openapi_document_declares_bearer_auth(http: httpx.AsyncClient) -> None:
    """Every /v1 operation and /metrics declare the scheme and their 401/403 answers."""
    doc = (await http.get("/schema/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    start = doc["paths"]["/v1/runs"]["post"]
    assert start["security"] == [{"bearerAuth": []}]
    assert {"401", "403"} <= set(start["responses"])
    assert "security" not in doc["paths"]["/healthz"]["get"]


async def test_revoking_the_last_key_leaves_the_api_locked(keys: MemoryKeys, ticks: Ticks) -> None:
    """auto on loopback: once the only key is revoked, everything but the probes is 401,
    and the answer says how to reopen deliberately (never silently open again)."""
    async with _client(_app(keys, ticks, mode="auto")) as http:
        token = keys.add(Scope.ADMIN)
        ticks.now += 5.0
        assert (await http.get("/v1/runs", headers=bearer(token))).status_code == 200
        await keys.revoke_api_key(next(iter(keys.keys)), T0)
        ticks.now += 5.0
        for response in (
            await http.get("/v1/runs"),
            await http.get("/v1/runs", headers=bearer(token)),
            await http.post("/v1/workflows", json=ORDER),
        ):
            body = problem(response, 401, "unauthenticated")
            assert body["detail"] == LOCKED
        assert "auth.mode" in LOCKED
        assert (await http.get("/healthz")).status_code == 200


async def test_off_mode_reopens_a_locked_api(keys: MemoryKeys, ticks: Ticks) -> None:
    """With every key revoked, `auth.mode = "off"` is the deliberate way back to open."""
    keys.add(Scope.ADMIN)
    await keys.revoke_api_key(next(iter(keys.keys)), T0)
    async with _client(_app(keys, ticks, mode="off")) as http:
        assert (await http.post("/v1/workflows", json=ORDER)).status_code == 201
