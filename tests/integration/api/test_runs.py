"""POST and GET /v1/runs: starting, idempotency, listing, reading, history."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import ORDER, problem, register, start

pytestmark = pytest.mark.anyio

RUN_FIELDS = {
    "id", "workflow", "version", "status", "input", "output", "error",
    "created_at", "started_at", "finished_at", "tasks", "paused", "idempotency_key",
    "parent_run_id", "parent_task_id", "tags",
}  # fmt: skip
TASK_FIELDS = {
    "task_id", "type", "status", "attempt", "input", "output", "error",
    "scheduled_at", "started_at", "finished_at", "progress", "child_run_id", "heartbeat",
    "waiting",
}  # fmt: skip


async def test_starting_a_run_answers_201_with_the_run_in_the_documented_shape(
    http: httpx.AsyncClient,
) -> None:
    """The run JSON has exactly the contract's keys, and its tasks are a list in order."""
    await register(http)
    response = await http.post("/v1/runs", json={"workflow": "order", "input": {"sku": "A1"}})
    assert response.status_code == 201
    run = response.json()
    assert set(run) == RUN_FIELDS
    assert run["workflow"] == "order"
    assert run["version"] == 1
    assert run["input"] == {"sku": "A1"}
    assert run["status"] == "running"
    assert [task["task_id"] for task in run["tasks"]] == ["reserve", "ship"]
    assert all(set(task) == TASK_FIELDS for task in run["tasks"])
    assert run["tasks"][0]["status"] == "pending"
    assert run["tasks"][0]["heartbeat"] is None  # no beat yet


async def test_a_repeated_idempotency_key_returns_the_existing_run_with_200(
    http: httpx.AsyncClient,
) -> None:
    """The same Idempotency-Key answers 200 with the run the first request started."""
    await register(http)
    body = {"workflow": "order", "input": {"sku": "A1"}}
    headers = {"Idempotency-Key": "order-1"}
    first = await http.post("/v1/runs", json=body, headers=headers)
    second = await http.post("/v1/runs", json=body, headers=headers)
    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]


async def test_an_empty_idempotency_key_is_400(http: httpx.AsyncClient) -> None:
    """A blank Idempotency-Key is a mistake, not 'no key'."""
    await register(http)
    response = await http.post(
        "/v1/runs",
        json={"workflow": "order", "input": {"sku": "A1"}},
        headers={"Idempotency-Key": " "},
    )
    problem(response, 400, "invalid-parameter")


async def test_a_pinned_version_is_used(http: httpx.AsyncClient) -> None:
    """`version` in the request pins the run to that version, not the latest."""
    await register(http)
    await register(http, {**ORDER, "description": "v2"})
    run = await start(http, version=1, input={"sku": "A1"})
    assert run["version"] == 1


async def test_unknown_workflow_is_404(http: httpx.AsyncClient) -> None:
    """Starting a workflow nobody registered is a 404 naming it."""
    response = await http.post("/v1/runs", json={"workflow": "ghost", "input": {}})
    assert problem(response, 404, "workflow-not-found")["workflow"] == "ghost"


async def test_input_that_fails_the_schema_is_422_with_paths(http: httpx.AsyncClient) -> None:
    """Input checked against input_schema lists each problem with its path."""
    await register(http)
    response = await http.post("/v1/runs", json={"workflow": "order", "input": {"qty": "two"}})
    body = problem(response, 422, "input-invalid")
    paths = {error["path"] for error in body["errors"]}
    assert paths == {"input.sku", "input.qty"}
    assert "sku" in body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"input": {}}, id="missing-workflow"),
        pytest.param({"workflow": 5}, id="workflow-not-a-string"),
        pytest.param({"workflow": "order", "inputs": {}}, id="unknown-field"),
        pytest.param({"workflow": "order", "version": "one"}, id="version-not-a-number"),
        pytest.param("order", id="not-an-object"),
    ],
)
async def test_a_malformed_start_request_is_400_with_errors(
    http: httpx.AsyncClient, body: object
) -> None:
    """Request bodies that do not match StartRunRequest are 400 problems listing why."""
    found = problem(await http.post("/v1/runs", json=body), 400, "request-invalid")
    assert found["errors"]
    assert all("message" in error and "path" in error for error in found["errors"])


async def test_an_empty_start_request_is_400(http: httpx.AsyncClient) -> None:
    """A POST without a body is a clear 400, not a crash."""
    problem(await http.post("/v1/runs"), 400)


async def test_get_run_returns_the_run(http: httpx.AsyncClient) -> None:
    """GET /v1/runs/{id} answers the same run POST created."""
    await register(http)
    started = await start(http, input={"sku": "A1"})
    response = await http.get(f"/v1/runs/{started['id']}")
    assert response.status_code == 200
    assert response.json() == started


async def test_unknown_run_is_404(http: httpx.AsyncClient) -> None:
    """Every per-run route answers 404 with the id for a run that does not exist."""
    for response in (
        await http.get("/v1/runs/nope"),
        await http.get("/v1/runs/nope/events"),
        await http.post("/v1/runs/nope/cancel"),
        await http.post("/v1/runs/nope/signals/go", json={}),
        await http.post("/v1/runs/nope/retry"),
    ):
        assert problem(response, 404, "run-not-found")["run_id"] == "nope"


async def test_list_runs_is_newest_first_with_filters_and_cursor(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """Runs list newest first, filter by workflow and status, and page with next_cursor."""
    await register(http)
    await register(http, {**ORDER, "name": "other"})
    ids = [(await start(http, input={"sku": str(i)}))["id"] for i in range(3)]
    other = (await http.post("/v1/runs", json={"workflow": "other", "input": {"sku": "x"}})).json()
    await engine.finish(ids[0], engine.runs[ids[0]].status.COMPLETED)

    everything = (await http.get("/v1/runs")).json()
    assert [r["id"] for r in everything["items"]] == [other["id"], *reversed(ids)]
    assert everything["next_cursor"] is None

    page = (await http.get("/v1/runs", params={"workflow": "order", "limit": 2})).json()
    assert [r["id"] for r in page["items"]] == [ids[2], ids[1]]
    rest = await http.get("/v1/runs", params={"workflow": "order", "cursor": page["next_cursor"]})
    assert [r["id"] for r in rest.json()["items"]] == [ids[0]]

    done = (await http.get("/v1/runs", params={"status": "completed"})).json()
    assert [r["id"] for r in done["items"]] == [ids[0]]
    assert done["items"][0]["status"] == "completed"


@pytest.mark.parametrize("limit", ["0", "-1", "51"])
async def test_a_limit_out_of_range_is_400(http: httpx.AsyncClient, limit: str) -> None:
    """limit must be between 1 and max_page_size; the answer says so."""
    body = problem(await http.get("/v1/runs", params={"limit": limit}), 400, "invalid-parameter")
    assert body["parameter"] == "limit"
    assert "between 1 and 50" in body["detail"]


async def test_a_limit_that_is_not_a_number_is_400(http: httpx.AsyncClient) -> None:
    """A non-numeric limit is a 400 naming the query parameter."""
    body = problem(await http.get("/v1/runs", params={"limit": "ten"}), 400, "request-invalid")
    assert body["errors"][0]["path"] == "query.limit"


async def test_a_bad_status_filter_is_400_listing_the_statuses(http: httpx.AsyncClient) -> None:
    """An unknown status is refused with the list of valid ones."""
    body = problem(await http.get("/v1/runs", params={"status": "done"}), 400, "invalid-parameter")
    assert "completed" in body["detail"]
    assert "'done'" in body["detail"]


async def test_a_bad_cursor_is_400(http: httpx.AsyncClient) -> None:
    """A cursor Treadle did not issue is a 400 problem, on runs, events and workflows."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    for path in ("/v1/runs", f"/v1/runs/{run['id']}/events", "/v1/workflows"):
        problem(await http.get(path, params={"cursor": "garbage"}), 400, "invalid-cursor")


async def test_events_list_the_history_with_a_cursor(http: httpx.AsyncClient) -> None:
    """GET /v1/runs/{id}/events pages through history entries oldest first."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    await http.post(f"/v1/runs/{run['id']}/signals/go", json={"n": 1})
    first = (await http.get(f"/v1/runs/{run['id']}/events", params={"limit": 1})).json()
    assert [e["type"] for e in first["items"]] == ["run.started"]
    assert set(first["items"][0]) == {"type", "at", "task_id", "attempt", "data"}
    rest = await http.get(f"/v1/runs/{run['id']}/events", params={"cursor": first["next_cursor"]})
    assert [e["type"] for e in rest.json()["items"]] == ["signal.received"]
    assert rest.json()["next_cursor"] is None
