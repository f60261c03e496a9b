"""Large values stay out of a run's JSON: `GET /v1/runs/{id}` elides each input or output
over `limits.max_inline_value_bytes` as `{"$elided": {bytes, href}}`, and the `href`
answers the one value (real engine on SQLite, PostgreSQL and MariaDB; and the fake)."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import msgspec
import pytest
from litestar import Litestar

from tests.integration.api._engines import DATABASES, database_url, running_engine
from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import ORDER, problem, register, start
from treadle.client import ApiError, AsyncClient, elided, elided_path
from treadle.config import ApiSettings, LimitsSettings
from treadle.domain.state import ErrorInfo, TaskStatus
from treadle.modules.api import create_app
from treadle.ports import OmittedValue
from treadle.wiring import Process

pytestmark = pytest.mark.anyio

BOUND = 1000
BIG = 5000
BLOBS: dict[str, Any] = {
    "name": "blobs",
    "tasks": {
        "big": {"handler": "api.blob", "input": {"size": "${ input.size }"}},
        "small": {"handler": "api.blob", "input": {"size": 3}},
        "each": {
            "type": "map",
            "items": "${ input.sizes }",
            "task": {"handler": "api.blob", "input": {"size": "${ item }"}},
        },
    },
    "output": "${ tasks.big.output }",
}
_INPUT = {"size": BIG, "sizes": [10, BIG]}


def _json_bytes(value: Any) -> int:
    return len(msgspec.json.encode(value))


class Served(NamedTuple):
    engine: Process
    app: Litestar
    api: httpx.AsyncClient


@pytest.fixture(params=DATABASES)
async def engine_api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Served]:
    """A running engine inlining at most `BOUND` bytes per value, its app, and a client."""
    limits = LimitsSettings(max_inline_value_bytes=BOUND)
    async with (
        database_url(request.param, tmp_path) as url,
        running_engine(url, limits) as (engine, app),
        httpx.AsyncClient(base_url="http://t.test", transport=httpx.ASGITransport(app)) as c,
    ):
        assert (await c.post("/v1/workflows", json=BLOBS)).status_code == 201
        yield Served(engine, app, c)


async def _finished_run(api: httpx.AsyncClient) -> dict[str, Any]:
    started = await api.post("/v1/runs", json={"workflow": "blobs", "input": _INPUT})
    assert started.status_code == 201, started.text
    run: dict[str, Any] = (await api.get(f"/v1/runs/{started.json()['id']}?wait=30")).json()
    assert run["status"] == "completed", run
    return run


async def test_values_over_the_bound_are_elided_with_their_size_and_a_working_href(
    engine_api: Served,
) -> None:
    """A 5,000-byte output is `{"$elided": {bytes, href}}` in the run (run output, task
    output, a map's list of outputs), small values stay inline, and each href answers
    exactly the value; the store's bounded read never loaded the large ones."""
    engine, _, api = engine_api
    run = await _finished_run(api)
    tasks = {t["task_id"]: t for t in run["tasks"]}
    value = "x" * BIG
    href = f"/v1/runs/{run['id']}/values/tasks/big/output"
    assert tasks["big"]["output"] == {"$elided": {"bytes": _json_bytes(value), "href": href}}
    assert run["output"]["$elided"]["href"] == f"/v1/runs/{run['id']}/values/output"
    assert tasks["each"]["output"]["$elided"]["bytes"] == _json_bytes(["x" * 10, value])
    assert tasks["small"]["output"] == "xxx"
    assert tasks["big"]["input"] == {"size": BIG}
    assert run["input"] == _INPUT

    for shown, expected in [
        (tasks["big"]["output"], value),
        (run["output"], value),
        (tasks["each"]["output"], ["x" * 10, value]),
    ]:
        answer = await api.get(shown["$elided"]["href"])
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("application/json")
        assert len(answer.content) == shown["$elided"]["bytes"]
        assert answer.json() == expected

    bounded = await engine.store.get_run_bounded(run["id"], BOUND)
    assert bounded.tasks["big"].output == OmittedValue(size=_json_bytes(value))
    assert bounded.tasks["small"].output == "xxx"


async def test_map_items_are_elided_with_a_bracketed_task_id_href(
    engine_api: Served,
) -> None:
    """On the items page a large item output links to `tasks/each[1]/output` (brackets
    percent-encoded); that path answers the item's value, raw brackets too; the store's
    bounded page left the large output in the database."""
    api = engine_api.api
    run = await _finished_run(api)
    items = (await api.get(f"/v1/runs/{run['id']}/tasks/each/items")).json()["items"]
    assert items[0]["output"] == "x" * 10
    href = f"/v1/runs/{run['id']}/values/tasks/each%5B1%5D/output"
    assert items[1]["output"] == {"$elided": {"bytes": BIG + 2, "href": href}}
    assert (await api.get(href)).json() == "x" * BIG
    raw = await api.get(f"/v1/runs/{run['id']}/values/tasks/each[1]/input")
    assert raw.json() == {"size": BIG}  # the item task's input, built from its element
    missing = await api.get(f"/v1/runs/{run['id']}/values/tasks/each%5B7%5D/output")
    assert problem(missing, 404)["detail"] == f"run {run['id']!r} has no map item 'each[7]'"
    everything = await api.get(f"/v1/runs/{run['id']}/tasks/each/items?inline=all")
    assert everything.json()["items"][1]["output"] == "x" * BIG
    page = await engine_api.engine.store.list_map_items(
        run["id"], "each", 10, None, most_bytes=BOUND
    )
    assert [i.output for i in page.items] == ["x" * 10, OmittedValue(size=BIG + 2)]


async def test_inline_all_answers_every_value_and_unknown_paths_are_4xx(
    engine_api: Served,
) -> None:
    """`?inline=all` inlines everything; a bad path is a 400, an unknown run or task a 404."""
    api = engine_api.api
    run = await _finished_run(api)
    full = (await api.get(f"/v1/runs/{run['id']}?inline=all")).json()
    assert full["output"] == "x" * BIG
    assert {t["task_id"]: t["output"] for t in full["tasks"]}["big"] == "x" * BIG

    values = f"/v1/runs/{run['id']}/values"
    assert (await api.get(f"{values}/input")).json() == _INPUT
    assert (await api.get(f"{values}/tasks/small/output")).json() == "xxx"
    assert (await api.get(f"{values}/tasks/big/error")).json() is None
    problem(await api.get(f"{values}/tasks/nope/output"), 404, "task-not-found")
    problem(await api.get("/v1/runs/nope/values/output"), 404, "run-not-found")
    for bad in ("status", "tasks/big", "tasks/big/status", "tasks/big[x]/output", "a/b/c/d"):
        body = problem(await api.get(f"{values}/{bad}"), 400)
        assert "tasks/<task>/output" in body["detail"]
    problem(await api.get(f"{values}/tasks/each[99999999999]/output"), 400)
    problem(await api.get(f"/v1/runs/{run['id']}?inline=some"), 400)


# --- the same answers from a store without bounded reads (measured by the API) -----------


@pytest.fixture
async def fake_api(engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The API over the fake engine (a store with only `get_run`), inlining `BOUND` bytes."""
    app = create_app(
        run_control=engine,
        workflows=engine,
        runs=engine,
        health=[],
        settings=ApiSettings(),
        limits=LimitsSettings(max_inline_value_bytes=BOUND),
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
        yield client


async def test_the_api_measures_values_itself_when_the_store_cannot(
    fake_api: httpx.AsyncClient,
) -> None:
    """Over a store with only `get_run` (the fake), a large run input is still elided in
    every run answer, and its href answers it from the whole run."""
    http = fake_api
    await register(http, ORDER)
    big = {"sku": "A" * 2000}
    run = await start(http, input=big)
    href = f"/v1/runs/{run['id']}/values/input"
    elided = {"$elided": {"bytes": _json_bytes(big), "href": href}}
    assert run["input"] == elided
    got = await http.get(f"/v1/runs/{run['id']}")
    assert got.json()["input"] == elided
    assert len(got.content) < BOUND
    assert (await http.get(href)).json() == big
    assert (await http.get(f"/v1/runs/{run['id']}?inline=all")).json()["input"] == big
    assert (await http.get(f"/v1/runs/{run['id']}/values/tasks/reserve/output")).json() is None
    problem(await http.get(f"/v1/runs/{run['id']}/values/tasks/reserve[0]/output"), 404)
    assert (await http.post(f"/v1/runs/{run['id']}/cancel", json={})).json()["input"] == elided


async def test_the_client_fetches_an_elided_value_and_can_ask_for_everything(
    engine_api: Served,
) -> None:
    """`AsyncClient.get_run` shows the marker, `elided_path` turns it into the path that
    `get_value` fetches (a map item's brackets too), and `inline=True` inlines all."""
    api = engine_api.api
    run_id = (await _finished_run(api))["id"]
    transport = httpx.ASGITransport(engine_api.app)
    async with AsyncClient("http://t.test", transport=transport) as client:
        run = await client.get_run(run_id)
        big = next(t for t in run.tasks if t.task_id == "big")
        marker = elided(big.output)
        assert marker is not None
        assert marker.bytes == BIG + 2
        assert elided_path(marker) == "tasks/big/output"
        assert await client.get_value(run_id, elided_path(marker)) == "x" * BIG
        assert await client.get_value(run_id, "tasks/each[1]/output") == "x" * BIG
        assert elided(run.input) is None
        full = await client.get_run(run_id, inline=True)
        assert full.output == "x" * BIG
        with pytest.raises(ApiError) as bad:
            await client.get_value(run_id, "tasks/big/nothing")
        assert bad.value.status == 400


async def test_reading_a_run_with_a_large_output_does_not_load_it(tmp_path: Path) -> None:
    """The issue's case, scaled down: with a 5 MB output stored, `GET /v1/runs/{id}` allocates
    well under a megabyte (the value stays in the database), `?inline=all` the whole value."""
    size = 5_000_000
    limits = LimitsSettings(max_output_bytes=2 * size)
    url = f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
    async with (
        running_engine(url, limits) as (_, app),
        httpx.AsyncClient(base_url="http://t.test", transport=httpx.ASGITransport(app)) as api,
    ):
        one = {"name": "one", "tasks": {"big": {"handler": "api.blob", "input": {"size": size}}}}
        assert (await api.post("/v1/workflows", json=one)).status_code == 201
        run_id = (await api.post("/v1/runs", json={"workflow": "one"})).json()["id"]
        assert (await api.get(f"/v1/runs/{run_id}?wait=30")).json()["status"] == "completed"

        async def peak_bytes(query: str) -> tuple[int, int]:
            tracemalloc.start()
            try:
                answer = await api.get(f"/v1/runs/{run_id}{query}")
                return len(answer.content), tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        length, peak = await peak_bytes("")
        assert length < 2000
        assert peak < 1_000_000
        length, peak = await peak_bytes("?inline=all")
        assert length > size
        assert peak > size


async def test_a_large_error_keeps_its_shape_cut_short_and_names_where_the_whole_is(
    fake_api: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """A task error over the bound keeps `type` and `retryable`; its message and traceback
    are cut, the message naming the size and href, which answers the whole error."""
    await register(fake_api, ORDER)
    run_id = (await start(fake_api, input={"sku": "A1"}))["id"]
    error = ErrorInfo(type="ValueError", message="m" * 3000, traceback="t" * 3000 + "END")
    state = engine.runs[run_id]
    task = msgspec.structs.replace(state.tasks["reserve"], status=TaskStatus.FAILED, error=error)
    engine.runs[run_id] = msgspec.structs.replace(state, tasks={**state.tasks, "reserve": task})

    got = await fake_api.get(f"/v1/runs/{run_id}")
    shown = {t["task_id"]: t for t in got.json()["tasks"]}["reserve"]["error"]
    href = f"/v1/runs/{run_id}/values/tasks/reserve/error"
    size = _json_bytes(error)
    assert shown["type"] == "ValueError"
    assert shown["retryable"] is True
    assert shown["message"].endswith(f"[error elided: {size:,} bytes as JSON; GET {href}]")
    assert shown["traceback"].endswith("END")
    assert _json_bytes(shown) < BOUND
    assert (await fake_api.get(href)).json() == msgspec.to_builtins(error)


async def test_the_size_counts_bytes_not_characters(engine_api: Served) -> None:
    """A run input of non-ASCII text is measured in UTF-8 bytes on every database, the
    same count the values route answers."""
    api = engine_api.api
    given = {"size": 1, "sizes": [], "note": "é€😀" * 200}
    started = await api.post("/v1/runs", json={"workflow": "blobs", "input": given})
    assert started.status_code == 201, started.text
    run = (await api.get(f"/v1/runs/{started.json()['id']}")).json()
    characters = len(msgspec.json.encode(given).decode())
    assert characters < BOUND < _json_bytes(given)  # counting characters would inline it
    assert run["input"]["$elided"]["bytes"] == _json_bytes(given)
    answer = await api.get(run["input"]["$elided"]["href"])
    assert len(answer.content) == _json_bytes(given)
    assert answer.json() == given
