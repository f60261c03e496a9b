"""POST and GET /v1/workflows: registration, versions, definition errors with paths."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api.conftest import ORDER, problem, register

pytestmark = pytest.mark.anyio


async def test_registering_a_new_definition_answers_201_with_name_and_version(
    http: httpx.AsyncClient,
) -> None:
    """A first registration creates version 1 and answers exactly {name, version}."""
    response = await http.post("/v1/workflows", json=ORDER)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"name": "order", "version": 1}


async def test_registering_identical_content_answers_200_with_the_latest_version(
    http: httpx.AsyncClient,
) -> None:
    """Re-registering the same content creates nothing and answers 200 with the same body."""
    await register(http)
    again = await http.post("/v1/workflows", json=ORDER)
    assert again.status_code == 200
    assert again.json() == {"name": "order", "version": 1}


async def test_changed_content_makes_a_new_version(http: httpx.AsyncClient) -> None:
    """A definition with different content under the same name becomes version 2."""
    await register(http)
    changed = {**ORDER, "description": "now with a description"}
    response = await http.post("/v1/workflows", json=changed)
    assert response.status_code == 201
    assert response.json() == {"name": "order", "version": 2}


async def test_an_invalid_definition_is_422_with_every_error_and_its_path(
    http: httpx.AsyncClient,
) -> None:
    """An unknown dependency and a broken expression are both listed with their paths."""
    bad = {
        "name": "order",
        "tasks": {
            "reserve": {"handler": "inventory.reserve", "when": "${ input.[ }"},
            "ship": {"after": ["nowhere"], "handler": "shipping.create"},
        },
    }
    body = problem(await http.post("/v1/workflows", json=bad), 422, "definition-invalid")
    paths = [error["path"] for error in body["errors"]]
    assert any(path.startswith("tasks.reserve.when") for path in paths), paths
    assert any(path.startswith("tasks.ship.after") for path in paths), paths
    assert all(error["message"] for error in body["errors"])


async def test_an_unknown_field_in_a_definition_is_422_at_its_path(
    http: httpx.AsyncClient,
) -> None:
    """A typo'd field is refused rather than ignored, at the path where it appears."""
    bad = {"name": "order", "tasks": {"reserve": {"handler": "a.b", "colour": "red"}}}
    body = problem(await http.post("/v1/workflows", json=bad), 422, "definition-invalid")
    assert body["errors"] == [{"path": "tasks.reserve.colour", "message": "unknown field"}]


async def test_a_definition_that_is_not_an_object_is_400(http: httpx.AsyncClient) -> None:
    """A JSON array where an object belongs is refused before it reaches the engine."""
    body = problem(await http.post("/v1/workflows", json=[ORDER]), 400, "request-invalid")
    assert "object" in body["detail"]


async def test_list_workflows_pages_by_name(http: httpx.AsyncClient) -> None:
    """The list shows the latest version of each workflow, paged with next_cursor."""
    for name in ("alpha", "beta", "gamma"):
        await register(http, {**ORDER, "name": name})
    first = await http.get("/v1/workflows", params={"limit": 2})
    assert first.status_code == 200
    page = first.json()
    assert [item["name"] for item in page["items"]] == ["alpha", "beta"]
    assert page["items"][0]["version"] == 1
    rest = (await http.get("/v1/workflows", params={"cursor": page["next_cursor"]})).json()
    assert [item["name"] for item in rest["items"]] == ["gamma"]
    assert rest["next_cursor"] is None


async def test_get_workflow_returns_the_latest_definition_and_its_versions(
    http: httpx.AsyncClient,
) -> None:
    """GET /v1/workflows/{name} is the latest definition plus every version, newest first."""
    await register(http)
    await register(http, {**ORDER, "description": "v2"})
    response = await http.get("/v1/workflows/order")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 2
    assert body["definition"]["description"] == "v2"
    assert [v["version"] for v in body["versions"]] == [2, 1]


async def test_get_one_version_returns_that_definition(http: httpx.AsyncClient) -> None:
    """GET /v1/workflows/{name}/versions/{v} returns exactly that version's definition."""
    await register(http)
    await register(http, {**ORDER, "description": "v2"})
    response = await http.get("/v1/workflows/order/versions/1")
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 1
    assert body["definition"] == ORDER


async def test_unknown_workflow_and_version_are_404_problems(http: httpx.AsyncClient) -> None:
    """Reading a workflow or version that does not exist is a 404 naming it."""
    missing = problem(await http.get("/v1/workflows/nope"), 404, "workflow-not-found")
    assert missing["workflow"] == "nope"
    await register(http)
    version = problem(await http.get("/v1/workflows/order/versions/9"), 404)
    assert version["version"] == 9


async def test_a_version_that_is_not_a_number_is_a_404_problem(http: httpx.AsyncClient) -> None:
    """A non-numeric version matches no route and is answered as a problem, not a 500."""
    problem(await http.get("/v1/workflows/order/versions/latest"), 404)


async def test_language_mistakes_are_422_at_their_paths(http: httpx.AsyncClient) -> None:
    """A switch naming an unknown task, an unclosed interpolation, a bad join and a bad
    dynamic value are each listed at their path."""
    bad = {
        "name": "lang",
        "tasks": {
            "route": {"type": "switch", "cases": [{"when": "${ input.a }", "then": ["ghost"]}]},
            "get": {"type": "http", "request": {"url": "https://x.example/${ input.id"}},
            "lone": {"handler": "a.b", "join": "all_done"},
            "fetch": {"handler": "a.b", "retry": {"max_attempts": "many"}},
        },
    }
    body = problem(await http.post("/v1/workflows", json=bad), 422, "definition-invalid")
    assert sorted(error["path"] for error in body["errors"]) == [
        "tasks.fetch.retry.max_attempts",
        "tasks.get.request.url",
        "tasks.lone.join",
        "tasks.route.cases[0].then[0]",
    ]
