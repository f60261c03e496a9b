"""/healthz, /readyz, /metrics and the OpenAPI document."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.integration.api._fakes import FakeCheck, FakeEngine
from tests.integration.api.conftest import asgi_client
from treadle.config import ApiSettings
from treadle.modules.api import _ops

pytestmark = pytest.mark.anyio


async def test_healthz_is_ok(http: httpx.AsyncClient) -> None:
    """Liveness answers 200 {"status": "ok"} whatever the dependencies say."""
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_200_when_every_check_passes(http: httpx.AsyncClient) -> None:
    """Readiness reports each check by name."""
    response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_readyz_is_503_with_the_reason_of_a_failing_check(
    engine: FakeEngine, settings: ApiSettings
) -> None:
    """One failing check makes the process unready, and its reason is reported."""
    checks = [FakeCheck("database"), FakeCheck("broker", "connection refused")]
    async with asgi_client(engine, checks, settings) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "broker": "connection refused"},
    }


async def test_readyz_times_out_a_hanging_check(
    engine: FakeEngine, settings: ApiSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that never answers is cut short and reported as timed out."""
    monkeypatch.setattr(_ops, "READINESS_TIMEOUT_SECONDS", 0.05)
    checks = [FakeCheck("database"), FakeCheck("broker", hang=True)]
    async with asgi_client(engine, checks, settings) as http:
        response = await http.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "timed out after 0.05s"


async def test_metrics_is_prometheus_text(http: httpx.AsyncClient) -> None:
    """/metrics serves the default registry in the Prometheus text format 0.0.4."""
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE" in response.text


async def test_the_openapi_document_lists_every_route(http: httpx.AsyncClient) -> None:
    """/schema/openapi.json is OpenAPI 3.1 JSON with every route and its methods."""
    response = await http.get("/schema/openapi.json")
    assert response.status_code == 200
    doc = json.loads(response.content)
    assert doc["openapi"].startswith("3.1")
    expected = {
        "/v1/workflows": {"get", "post"},
        "/v1/workflows/{name}": {"get"},
        "/v1/workflows/{name}/versions/{version}": {"get"},
        "/v1/runs": {"get", "post"},
        "/v1/runs/counts": {"get"},
        "/v1/runs/{run_id}": {"get"},
        "/v1/runs/{run_id}/events": {"get"},
        "/v1/runs/{run_id}/tasks/{task_id}/items": {"get"},
        "/v1/runs/{run_id}/values/{value_path}": {"get"},
        "/v1/runs/{run_id}/cancel": {"post"},
        "/v1/runs/{run_id}/signals/{name}": {"post"},
        "/v1/runs/{run_id}/retry": {"post"},
        "/v1/runs/{run_id}/pause": {"post"},
        "/v1/runs/{run_id}/resume": {"post"},
        "/v1/schedules": {"get", "post"},
        "/v1/schedules/{schedule_id}": {"get", "patch", "delete"},
        "/v1/schedules/{schedule_id}/trigger": {"post"},
        "/v1/schedules/{schedule_id}/backfill": {"post", "delete"},
        "/v1/schedules/{schedule_id}/pause": {"post"},
        "/v1/schedules/{schedule_id}/resume": {"post"},
        "/v1/workers": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }
    paths = doc["paths"]
    assert set(paths) == set(expected)
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path


async def test_the_openapi_document_describes_both_answers_of_registration(
    http: httpx.AsyncClient,
) -> None:
    """POST /v1/workflows documents 201 (created) and 200 (identical), and 422 problems."""
    doc = (await http.get("/schema/openapi.json")).json()
    responses = doc["paths"]["/v1/workflows"]["post"]["responses"]
    assert {"200", "201", "422"} <= set(responses)
    assert "application/problem+json" in responses["422"]["content"]
    start = doc["paths"]["/v1/runs"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in start["parameters"])
    assert set(doc["components"]["schemas"]["RunBody"]["properties"]) >= {"id", "tasks"}


async def test_the_openapi_document_describes_the_last_heartbeat(http: httpx.AsyncClient) -> None:
    """A task and a map item document `heartbeat` as `{at, attempt, details}` or null."""
    schemas = (await http.get("/schema/openapi.json")).json()["components"]["schemas"]
    for body in ("TaskBody", "MapItemBody"):
        field = schemas[body]["properties"]["heartbeat"]
        refs = [choice.get("$ref") or choice.get("type") for choice in field["oneOf"]]
        assert refs == ["#/components/schemas/HeartbeatBody", "null"], body
        assert "last heartbeat" in field["description"]
    heartbeat = schemas["HeartbeatBody"]
    assert set(heartbeat["properties"]) == {"at", "attempt", "details"}
    assert set(heartbeat["required"]) == {"at", "attempt"}


async def test_the_openapi_document_describes_what_a_task_waits_for(
    http: httpx.AsyncClient,
) -> None:
    """A task documents `waiting` as `{reason, until, signal}` or null, with its reasons."""
    schemas = (await http.get("/schema/openapi.json")).json()["components"]["schemas"]
    field = schemas["TaskBody"]["properties"]["waiting"]
    refs = [choice.get("$ref") or choice.get("type") for choice in field["oneOf"]]
    assert refs == ["#/components/schemas/WaitBody", "null"]
    assert "waits for" in field["description"]
    wait = schemas["WaitBody"]
    assert set(wait["properties"]) == {"reason", "until", "signal"}
    assert set(wait["properties"]["reason"]["enum"]) == {"signal", "sleep", "retry", "resume"}


async def test_the_docs_ui_is_served_at_schema(http: httpx.AsyncClient) -> None:
    """/schema is an HTML docs page."""
    response = await http.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


async def test_the_docs_page_loads_only_files_this_server_serves(http: httpx.AsyncClient) -> None:
    """Every script, style and icon of /schema is a path here answering 200 (no CDN: the
    page works offline)."""
    page = (await http.get("/schema")).text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert {"/schema/assets/swagger-ui-bundle.js", "/schema/assets/swagger-ui.css"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/"), asset
        assert not asset.startswith("//"), asset
        answer = await http.get(asset)
        assert answer.status_code == 200, asset
        assert answer.content, asset
    script = await http.get("/schema/assets/swagger-ui-bundle.js")
    assert "javascript" in script.headers["content-type"]
    assert (await http.get("/schema/assets/nope.js")).status_code == 404


async def test_the_root_redirects_to_the_dashboard(http: httpx.AsyncClient) -> None:
    """`/`, the address a person types first, sends the browser to /ui."""
    response = await http.get("/")
    assert response.status_code == 302
    assert response.headers["location"] == "/ui"


async def test_every_v1_operation_documents_its_400_as_a_problem(http: httpx.AsyncClient) -> None:
    """Any /v1 route refuses a NUL or an unknown query parameter with a 400 problem, and its
    document says so (not litestar's default 400, a JSON body this API never sends)."""
    doc = (await http.get("/schema/openapi.json")).json()
    operations = [
        (method, path, operation)
        for path, item in doc["paths"].items()
        if path.startswith("/v1/")
        for method, operation in item.items()
        if method in {"get", "post", "delete"}
    ]
    assert len(operations) >= 20
    for method, path, operation in operations:
        content = operation["responses"]["400"]["content"]
        assert set(content) == {"application/problem+json"}, (method, path)
        assert content["application/problem+json"]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }


async def test_deleting_a_schedule_documents_a_204_without_a_body(http: httpx.AsyncClient) -> None:
    """DELETE /v1/schedules/{id} answers 204 with nothing, and the document promises nothing."""
    doc = (await http.get("/schema/openapi.json")).json()
    no_content = doc["paths"]["/v1/schedules/{schedule_id}"]["delete"]["responses"]["204"]
    assert not no_content.get("content")
