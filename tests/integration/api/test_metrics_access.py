"""/metrics asks for the same key on every role: the api's guard and the operations app of
a process without the api role (worker, orchestrator) answer each case alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.api._fakes import FakeCheck
from tests.integration.api.test_auth import MemoryKeys, Ticks, _app, _client
from treadle.config import AuthSettings
from treadle.domain.api_keys import Scope
from treadle.observability import Metrics
from treadle.serving._access import MetricsAccess
from treadle.serving.operations import operations_app

pytestmark = pytest.mark.anyio

AppMaker = Callable[..., Any]


def _operations(keys: MemoryKeys, ticks: Ticks, *, loopback: bool = True, **auth: Any) -> Any:
    access = MetricsAccess(keys, AuthSettings(**auth), loopback=loopback, monotonic=ticks)
    return operations_app(Metrics(roles={"worker"}), [FakeCheck("database")], access)


@pytest.fixture
def keys() -> MemoryKeys:
    """The key store behind both apps."""
    return MemoryKeys()


@pytest.fixture
def ticks() -> Ticks:
    """The key-count cache's clock."""
    return Ticks()


@pytest.fixture(params=[_app, _operations], ids=["api", "operations"])
def make_app(request: pytest.FixtureRequest) -> AppMaker:
    """Builds the api app or the operations-only app over the same keys."""
    maker: AppMaker = request.param
    return maker


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("auth", "loopback", "scope", "expected"),
    [
        pytest.param({"mode": "keys"}, True, None, 401, id="keys-no-key"),
        pytest.param({"mode": "keys"}, True, Scope.READ, 200, id="keys-read-key"),
        pytest.param({"mode": "keys"}, True, Scope.ADMIN, 200, id="keys-admin-key"),
        pytest.param({"mode": "keys", "open_metrics": True}, True, None, 200, id="open-metrics"),
        pytest.param({"mode": "auto"}, True, None, 200, id="auto-loopback-no-keys"),
        pytest.param({"mode": "auto"}, False, None, 401, id="auto-off-loopback"),
        pytest.param({"mode": "off"}, True, None, 200, id="off"),
    ],
)
async def test_metrics_access_is_the_same_on_every_role(
    make_app: AppMaker,
    keys: MemoryKeys,
    ticks: Ticks,
    auth: dict[str, Any],
    loopback: bool,
    scope: Scope | None,
    expected: int,
) -> None:
    """Each auth setting lets the same scrapes through on the api and on the other roles."""
    headers = bearer(keys.add(scope)) if scope is not None else {}
    if scope is None and auth.get("mode") == "keys":
        keys.add(Scope.READ)  # a key exists, the scrape just does not send it
    async with _client(make_app(keys, ticks, loopback=loopback, **auth)) as http:
        response = await http.get("/metrics", headers=headers)

    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["status"] == 401
    else:
        assert "treadle_build_info" in response.text


async def test_a_bad_or_revoked_key_is_refused_on_every_role(
    make_app: AppMaker, keys: MemoryKeys, ticks: Ticks
) -> None:
    """A malformed token and an unknown key get 401 on both apps."""
    keys.add(Scope.READ)
    async with _client(make_app(keys, ticks, mode="keys")) as http:
        malformed = await http.get("/metrics", headers=bearer("nonsense"))
        unknown = await http.get("/metrics", headers=bearer("trd_" + "a" * 12 + "_" + "b" * 32))

    assert (malformed.status_code, unknown.status_code) == (401, 401)
