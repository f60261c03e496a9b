"""POST /v1/runs/{id}/cancel, /signals/{name} and /retry."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import problem, register, start
from treadle.domain.state import RunStatus

pytestmark = pytest.mark.anyio


async def test_cancel_answers_202_with_the_run(http: httpx.AsyncClient) -> None:
    """Cancelling an active run answers 202 with the run, and the reason reaches history."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    response = await http.post(f"/v1/runs/{run['id']}/cancel", json={"reason": "changed mind"})
    assert response.status_code == 202
    assert response.json()["id"] == run["id"]
    history = (await http.get(f"/v1/runs/{run['id']}/events")).json()["items"]
    assert {"reason": "changed mind"} in [entry["data"] for entry in history]


async def test_cancel_without_a_body_is_accepted(http: httpx.AsyncClient) -> None:
    """The cancel body is optional."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    assert (await http.post(f"/v1/runs/{run['id']}/cancel")).status_code == 202


async def test_cancel_with_an_unknown_field_is_400(http: httpx.AsyncClient) -> None:
    """A cancel body with a typo is refused, not half-understood."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    response = await http.post(f"/v1/runs/{run['id']}/cancel", json={"reasn": "x"})
    problem(response, 400, "request-invalid")


async def test_cancel_on_a_finished_run_is_409(http: httpx.AsyncClient, engine: FakeEngine) -> None:
    """A finished run cannot be cancelled; the problem names its status."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    await engine.finish(run["id"], RunStatus.COMPLETED)
    body = problem(await http.post(f"/v1/runs/{run['id']}/cancel"), 409, "run-not-active")
    assert body["run_status"] == "completed"


async def test_a_signal_answers_202_and_carries_its_payload(http: httpx.AsyncClient) -> None:
    """The JSON body of a signal is its payload, delivered under the name in the path."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    response = await http.post(f"/v1/runs/{run['id']}/signals/approve", json={"by": "ada"})
    assert response.status_code == 202
    assert response.json()["id"] == run["id"]
    history = (await http.get(f"/v1/runs/{run['id']}/events")).json()["items"]
    assert history[-1]["data"] == {"name": "approve", "payload": {"by": "ada"}}


async def test_a_signal_may_carry_any_json_value(http: httpx.AsyncClient) -> None:
    """A payload need not be an object: a bare number is a payload too."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    assert (await http.post(f"/v1/runs/{run['id']}/signals/n", json=42)).status_code == 202


async def test_a_signal_to_a_finished_run_is_409(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """Signalling a run that already ended is a conflict, not a silent drop."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    await engine.finish(run["id"], RunStatus.FAILED)
    response = await http.post(f"/v1/runs/{run['id']}/signals/approve", json={})
    assert problem(response, 409, "run-not-active")["run_status"] == "failed"


async def test_retry_of_a_run_still_running_is_409(http: httpx.AsyncClient) -> None:
    """The route hands retry to the engine, whose refusal of a running run is a 409 problem."""
    await register(http)
    run = await start(http, input={"sku": "A1"})
    body = problem(await http.post(f"/v1/runs/{run['id']}/retry"), 409, "run-not-active")
    assert body["run_status"] == "running"


async def test_an_api_built_without_schedules_says_so(http: httpx.AsyncClient) -> None:
    """An embedding that wires no schedule service answers 404 schedules-unavailable."""
    problem(await http.get("/v1/schedules"), 404, "schedules-unavailable")
