"""Run tags and operator-driven schedules over the real engine, on SQLite and PostgreSQL:
tags at start, from the definition and a schedule, the `?tag=` filter; trigger, PATCH and
backfill of a schedule."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.integration.api._engines import engine_client

pytestmark = pytest.mark.anyio

TAGGED: dict[str, Any] = {
    "name": "tagged",
    "tags": {"team": "billing", "customer": "default"},
    "tasks": {"hello": {"handler": "api.greet", "input": {"who": "x"}}},
}


@pytest.fixture(params=["sqlite", "postgres"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on a running engine's API, per database."""
    async with engine_client(request.param, tmp_path) as client:
        assert (await client.post("/v1/workflows", json=TAGGED)).status_code == 201
        yield client


async def _start(api: httpx.AsyncClient, **tags: str) -> dict[str, Any]:
    answer = await api.post("/v1/runs", json={"workflow": "tagged", "tags": tags})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def _ids(api: httpx.AsyncClient, *tags: str) -> list[str]:
    answer = await api.get("/v1/runs", params=[("tag", t) for t in tags])
    assert answer.status_code == 200, answer.text
    return [r["id"] for r in answer.json()["items"]]


async def test_tags_merge_over_the_definition_and_filter_runs(api: httpx.AsyncClient) -> None:
    """Start tags win over the definition's per key; several ?tag= must all match."""
    acme = await _start(api, customer="acme", region="eu")
    other = await _start(api, customer="zeta")
    assert acme["tags"] == {"team": "billing", "customer": "acme", "region": "eu"}
    assert (await api.get(f"/v1/runs/{acme['id']}")).json()["tags"] == acme["tags"]
    assert await _ids(api, "customer:acme") == [acme["id"]]
    assert await _ids(api, "team:billing") == [other["id"], acme["id"]]
    assert await _ids(api, "team:billing", "region:eu") == [acme["id"]]
    assert await _ids(api, "customer:acme", "region:us") == []
    listed = (await api.get("/v1/runs", params={"tag": "customer:zeta"})).json()["items"]
    assert listed[0]["tags"]["customer"] == "zeta"


async def test_bad_tags_are_422_with_paths_and_a_bad_filter_400(api: httpx.AsyncClient) -> None:
    """Too long values, bad keys and too many tags are refused with each error's path."""
    body = {"workflow": "tagged", "tags": {"ok": "x" * 201, "bad key": "v"}}
    answer = await api.post("/v1/runs", json=body)
    assert answer.status_code == 422
    paths = sorted(e["path"] for e in answer.json()["errors"])
    assert paths == ["tags", "tags.ok"]
    many = {"workflow": "tagged", "tags": {f"k{i}": "v" for i in range(17)}}
    assert (await api.post("/v1/runs", json=many)).status_code == 422
    refused = await api.get("/v1/runs", params={"tag": "no-colon"})
    assert refused.status_code == 400
    assert refused.json()["parameter"] == "tag"


async def _schedule(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "nightly", "workflow": "tagged", "cron": "@daily", **fields}
    answer = await api.post("/v1/schedules", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


async def test_trigger_starts_a_tagged_run_now_without_moving_the_next_tick(
    api: httpx.AsyncClient,
) -> None:
    """A trigger starts one run with the schedule's tags, recorded as its last run."""
    created = await _schedule(api, tags={"customer": "nightly"})
    assert created["cron"] == "@daily"
    answer = await api.post(f"/v1/schedules/{created['id']}/trigger")
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["tags"] == {"team": "billing", "customer": "nightly"}
    after = (await api.get(f"/v1/schedules/{created['id']}")).json()
    assert after["last_run_id"] == run["id"]
    assert after["next_fire_at"] == created["next_fire_at"]


async def test_patch_changes_the_trigger_and_refuses_what_cannot_change(
    api: httpx.AsyncClient,
) -> None:
    """PATCH to an interval moves the next tick to follow it; name and paused are 422."""
    created = await _schedule(api)
    answer = await api.patch(f"/v1/schedules/{created['id']}", json={"interval": "1h"})
    assert answer.status_code == 200, answer.text
    patched = answer.json()
    assert (patched["cron"], patched["interval_seconds"]) == (None, 3600.0)
    next_at = datetime.fromisoformat(patched["next_fire_at"])
    assert next_at - datetime.now(UTC) <= timedelta(hours=1)
    refused = await api.patch(f"/v1/schedules/{created['id']}", json={"name": "x", "cron": "?"})
    assert refused.status_code == 422
    assert [e["path"] for e in refused.json()["errors"]] == ["name"]
    bad_cron = await api.patch(f"/v1/schedules/{created['id']}", json={"cron": "@often"})
    assert [e["path"] for e in bad_cron.json()["errors"]] == ["cron"]


async def test_backfill_starts_one_run_per_missed_tick_and_finishes(
    api: httpx.AsyncClient,
) -> None:
    """Five past hourly ticks, two at a time: five runs, one per tick, then no backfill."""
    created = await _schedule(api, cron="@hourly", tags={"customer": "backfill"})
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    body = {"start": (end - timedelta(hours=5)).isoformat(), "end": end.isoformat()}
    answer = await api.post(
        f"/v1/schedules/{created['id']}/backfill", json={**body, "max_concurrent": 2}
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["backfill"]["max_concurrent"] == 2
    again = await api.post(f"/v1/schedules/{created['id']}/backfill", json=body)
    assert again.status_code in (409, 202)  # 202 only if it already finished
    with anyio.fail_after(20):
        # Polled over HTTP: the backfill advances in the engine's schedule loop.
        while (await api.get(f"/v1/schedules/{created['id']}")).json()["backfill"] is not None:  # noqa: ASYNC110
            await anyio.sleep(0.1)
    assert len(await _ids(api, "customer:backfill")) == 5


async def test_a_bad_backfill_range_is_422_with_its_path(api: httpx.AsyncClient) -> None:
    """An end in the future, or before the start, names `end`."""
    created = await _schedule(api)
    now = datetime.now(UTC)
    future = {"start": now.isoformat(), "end": (now + timedelta(days=1)).isoformat()}
    answer = await api.post(f"/v1/schedules/{created['id']}/backfill", json=future)
    assert answer.status_code == 422
    assert [e["path"] for e in answer.json()["errors"]] == ["end"]
    huge = {"start": "2000-01-01T00:00:00Z", "end": now.isoformat(), "max_concurrent": 0}
    answer = await api.post(f"/v1/schedules/{created['id']}/backfill", json=huge)
    assert [e["path"] for e in answer.json()["errors"]] == ["max_concurrent"]


async def test_a_definition_with_bad_default_tags_is_422_at_registration(
    api: httpx.AsyncClient,
) -> None:
    """Default tags are checked when the workflow is registered, each error at its path."""
    bad = {**TAGGED, "name": "bad-tags", "tags": {"ok": "v", "-x": "v", "long": "v" * 201}}
    answer = await api.post("/v1/workflows", json=bad)
    assert answer.status_code == 422
    assert sorted(e["path"] for e in answer.json()["errors"]) == ["tags", "tags.long"]


async def test_a_schedule_passes_its_tags_to_the_runs_it_starts_on_patch_too(
    api: httpx.AsyncClient,
) -> None:
    """PATCHed tags are what the next run (here a trigger) carries."""
    created = await _schedule(api, tags={"customer": "before"})
    patched = await api.patch(
        f"/v1/schedules/{created['id']}", json={"tags": {"customer": "after"}}
    )
    assert patched.json()["tags"] == {"customer": "after"}
    run = (await api.post(f"/v1/schedules/{created['id']}/trigger")).json()
    assert run["tags"]["customer"] == "after"
    assert await _ids(api, "customer:after") == [run["id"]]
