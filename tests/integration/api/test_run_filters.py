"""GET /v1/runs filters (idempotency key, creation range) and GET /v1/runs/counts."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from tests.integration.api._fakes import FakeEngine
from tests.integration.api.conftest import problem, register, start
from treadle.domain.state import RunStatus

pytestmark = pytest.mark.anyio

T0 = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)


def _created_at(engine: FakeEngine, run_id: str, hour: int) -> None:
    """Move a fake run's creation time to `hour` o'clock on T0's day."""
    run = engine.runs[run_id]
    engine.runs[run_id] = msgspec.structs.replace(run, created_at=T0.replace(hour=hour))


async def test_idempotency_key_filter_finds_the_run_and_items_show_the_key(
    http: httpx.AsyncClient,
) -> None:
    """`idempotency_key=` returns only the run started with that key, and shows the key."""
    await register(http)
    await start(http, input={"sku": "A1"})
    keyed = await http.post(
        "/v1/runs",
        json={"workflow": "order", "input": {"sku": "B2"}},
        headers={"Idempotency-Key": "order-7"},
    )
    page = (await http.get("/v1/runs", params={"idempotency_key": "order-7"})).json()
    assert [(r["id"], r["idempotency_key"]) for r in page["items"]] == [
        (keyed.json()["id"], "order-7")
    ]
    assert (await http.get("/v1/runs", params={"idempotency_key": "nope"})).json()["items"] == []


async def test_an_empty_idempotency_key_filter_is_400(http: httpx.AsyncClient) -> None:
    """An empty key is a mistake, not "no filter"."""
    body = problem(
        await http.get("/v1/runs", params={"idempotency_key": ""}), 400, "invalid-parameter"
    )
    assert body["parameter"] == "idempotency_key"


async def test_creation_range_keeps_runs_from_after_up_to_before(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """created_after is inclusive, created_before exclusive, offsets are honoured."""
    await register(http)
    ids = [(await start(http, input={"sku": str(h)}))["id"] for h in range(4)]
    for hour, run_id in enumerate(ids):
        _created_at(engine, run_id, 10 + hour)  # 10:00 .. 13:00 UTC
    params = {
        "created_after": "2025-01-31T11:00:00Z",
        "created_before": "2025-01-31T14:00:00+01:00",
    }
    page = (await http.get("/v1/runs", params=params)).json()
    assert [r["id"] for r in page["items"]] == [ids[2], ids[1]]
    assert engine.list_filters["created_before"] == T0.replace(hour=13)


@pytest.mark.parametrize("name", ["created_after", "created_before"])
@pytest.mark.parametrize(
    "value",
    ["yesterday", "2025-01-31", "2025-01-31T12:00:00", "2025-01-31T12:00:00 02:00", ""],
    ids=["word", "date-only", "no-offset", "unencoded-plus", "empty"],
)
async def test_a_bad_timestamp_is_400_naming_the_parameter(
    http: httpx.AsyncClient, name: str, value: str
) -> None:
    """Anything but an RFC 3339 date-time with an offset is a 400 problem, not a 500."""
    body = problem(await http.get("/v1/runs", params={name: value}), 400, "invalid-parameter")
    assert body["parameter"] == name
    assert "RFC 3339" in body["detail"]


async def test_counts_give_every_status_filtered_and_capped(
    http: httpx.AsyncClient, engine: FakeEngine
) -> None:
    """GET /v1/runs/counts counts each status for a workflow since a time, with the cap."""
    await register(http)
    ids = [(await start(http, input={"sku": str(h)}))["id"] for h in range(3)]
    for hour, run_id in enumerate(ids):
        _created_at(engine, run_id, 10 + hour)
    await engine.finish(ids[2], RunStatus.FAILED)
    body = (
        await http.get(
            "/v1/runs/counts", params={"workflow": "order", "created_after": "2025-01-31T11:00:00Z"}
        )
    ).json()
    assert body["counts"] == {s.value: 0 for s in RunStatus} | {"running": 1, "failed": 1}
    assert (body["capped"], body["cap"]) == (False, 10_000)
    other = (await http.get("/v1/runs/counts", params={"workflow": "other"})).json()
    assert sum(other["counts"].values()) == 0


async def test_counts_refuse_a_bad_timestamp(http: httpx.AsyncClient) -> None:
    """A created_after that is not RFC 3339 is a 400 problem on the counts route too."""
    response = await http.get("/v1/runs/counts", params={"created_after": "last week"})
    assert problem(response, 400, "invalid-parameter")["parameter"] == "created_after"
