"""Definitions past the registration bounds are a 422 naming the path and the limit."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.api.conftest import problem
from tests.ports import free_port
from treadle.config import LimitsSettings, load_settings

pytestmark = pytest.mark.anyio


def _one_task(task: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bounded", "tasks": {"a": task}}


def _errors(response: httpx.Response) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = problem(response, 422)["errors"]
    return errors


async def test_a_billion_attempts_is_422_at_max_attempts(http: httpx.AsyncClient) -> None:
    """retry.max_attempts over limits.max_attempts is refused with its path."""
    task = {"handler": "h", "retry": {"max_attempts": 1_000_000_000, "initial_interval": "1ms"}}
    response = await http.post("/v1/workflows", json=_one_task(task))
    assert _errors(response) == [
        {
            "path": "tasks.a.retry.max_attempts",
            "message": "must be at most 1000 (limits.max_attempts)",
        },
        {
            "path": "tasks.a.retry.initial_interval",
            "message": "must be at least 0.1s (limits.min_retry_interval_seconds)",
        },
    ]


def test_the_retry_limits_are_settings_the_domain_receives() -> None:
    """limits.max_attempts and limits.min_retry_interval_seconds reach the compiled limits."""
    defaults = load_settings(environ={}).limits.domain()
    assert (defaults.max_attempts, defaults.min_retry_interval_seconds) == (1000, 0.1)
    custom = LimitsSettings(max_attempts=10, min_retry_interval_seconds=2.0).domain()
    assert (custom.max_attempts, custom.min_retry_interval_seconds) == (10, 2.0)


async def test_a_reference_to_an_unknown_task_is_422_at_its_path(http: httpx.AsyncClient) -> None:
    """`${ tasks.nope.output }` is refused at registration, not null in every run."""
    definition = {
        "name": "typo",
        "tasks": {"a": {"handler": "h"}, "b": {"handler": "h", "input": "${ tasks.nope.output }"}},
    }
    response = await http.post("/v1/workflows", json=definition)
    assert _errors(response) == [
        {
            "path": "tasks.b.input",
            "message": "expression 'tasks.nope.output': unknown task 'nope'",
        }
    ]


async def test_a_sleep_until_past_year_9999_in_utc_is_422(http: httpx.AsyncClient) -> None:
    """A sleep `until` that overflows once taken to UTC is refused at registration (it was
    registered, then every run of it was a 500: the store could not keep the date)."""
    task = {"type": "sleep", "until": "9999-12-31T23:59:59-14:00"}
    (error,) = _errors(await http.post("/v1/workflows", json=_one_task(task)))
    assert error["path"] == "tasks.a.until"
    assert "outside years 1 to 9999" in error["message"]
    latest = {"type": "sleep", "until": "9999-12-31T23:59:59+14:00"}
    response = await http.post("/v1/workflows", json=_one_task(latest))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("schema", "path", "says"),
    [
        ({"type": "string", "pattern": "("}, "input_schema.pattern", "not a valid JSON Schema"),
        ({"patternProperties": {"[": {}}}, "input_schema.patternProperties", "not a valid"),
        ({"$ref": "#"}, "input_schema", "refers to itself without end"),
        ({"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#"}}}, "input_schema", "without end"),
        ({"$ref": "http://127.0.0.1:9/schema.json"}, "input_schema.$ref", "points nowhere"),
        (
            {"properties": {"a": {"$ref": "#/$defs/nope"}}},
            "input_schema.properties.a.$ref",
            "nowhere",
        ),
    ],
)
async def test_an_input_schema_that_cannot_check_inputs_is_422(
    http: httpx.AsyncClient, schema: dict[str, Any], path: str, says: str
) -> None:
    """A pattern that is no regex, a $ref cycle that checks nothing, or a $ref to another
    document or to nothing is refused at registration (each made starting a run a 500)."""
    definition = {"name": "checked", "input_schema": schema, "tasks": {"a": {"handler": "h"}}}
    errors = _errors(await http.post("/v1/workflows", json=definition))
    assert [e["path"] for e in errors] == [path], errors
    assert says in errors[0]["message"]


async def test_a_recursive_input_schema_still_checks_inputs(http: httpx.AsyncClient) -> None:
    """A schema that recurses with the data (a tree) is fine, and a cycle only some inputs
    reach is a 422 for those inputs, not a 500."""
    tree = {"type": "object", "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}}}
    loop = {"properties": {"a": {"$ref": "#/properties/a"}}}
    for name, schema in (("tree", tree), ("loop", loop)):
        definition = {"name": name, "input_schema": schema, "tasks": {"a": {"handler": "h"}}}
        registered = await http.post("/v1/workflows", json=definition)
        assert registered.status_code == 201, registered.text
    nested = {"kids": [{"kids": []}, {"kids": [{}]}]}
    started = await http.post("/v1/runs", json={"workflow": "tree", "input": nested})
    assert started.status_code == 201, started.text
    bad = await http.post("/v1/runs", json={"workflow": "tree", "input": {"kids": [1]}})
    problem(bad, 422, "input-invalid")
    looping = await http.post("/v1/runs", json={"workflow": "loop", "input": {"a": 1}})
    body = problem(looping, 422, "input-invalid")
    assert "cannot check this input" in body["detail"]


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Serves a JSON Schema and counts the requests for it."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b'{"type": "string"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def schema_server() -> Iterator[str]:
    """A loopback HTTP server holding a schema; its URL."""
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/schema.json"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_ref_to_another_document_is_never_fetched(
    http: httpx.AsyncClient, schema_server: str
) -> None:
    """An input_schema's `$ref` to a URL is a 422, and the URL is never requested (the
    default jsonschema registry would download it, from wherever it points)."""
    definition = {
        "name": "remote",
        "input_schema": {"$ref": schema_server},
        "tasks": {"a": {"handler": "h"}},
    }
    errors = _errors(await http.post("/v1/workflows", json=definition))
    assert [e["path"] for e in errors] == ["input_schema.$ref"]
    assert _Recorder.seen == []
