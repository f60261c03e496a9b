"""End to end over HTTP: `map` tasks fanning out under a cap, and child runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Server


def register(server: Server, definition: dict[str, Any]) -> None:
    """Register a workflow and check the API's answer."""
    response = server.http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text


def task_of(run: dict[str, Any], task_id: str) -> dict[str, Any]:
    """One task of a run's JSON."""
    return next(t for t in run["tasks"] if t["task_id"] == task_id)


def wait_until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


# The 1,000-item run takes ~3,000 serialised decisions on one run (about 10 s alone on a
# quiet 2-core machine, several times that beside three other xdist workers): its time is
# sized for a machine twice as slow and busy. PostgreSQL runs a smaller variant below.
MAP_TEST_SECONDS = 300


@pytest.mark.timeout(MAP_TEST_SECONDS)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_map_of_1000_items_never_exceeds_its_concurrency(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """1,000 items with concurrency 10: at most 10 run at once, outputs in input order."""
    check_map(serve(), tmp_path, items=1000)


@pytest.mark.timeout(MAP_TEST_SECONDS)
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_map_on_postgres_keeps_its_cap_and_order(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """The same map, 200 items, on PostgreSQL: cap respected, outputs in input order."""
    check_map(serve(), tmp_path, items=200)


def check_map(server: Server, tmp_path: Path, *, items: int) -> None:
    """Run a map of `items` under concurrency 10 and check cap, order, counts and pages."""
    register(
        server,
        {
            "name": "fan",
            "tasks": {
                "m": {
                    "type": "map",
                    "items": "${ input.items }",
                    "concurrency": 10,
                    "task": {
                        "handler": "e2e.track",
                        "input": {"n": "${ item }", "file": "${ input.file }"},
                    },
                }
            },
            "output": "${ tasks.m.output }",
        },
    )
    counter = tmp_path / "max-in-flight"
    response = server.start("fan", {"items": list(range(items)), "file": str(counter)})
    assert response.status_code == 201, response.text
    # the server's own stop (teardown) may take up to 30 s of the test's time
    run = server.wait_for_run(response.json()["id"], timeout=MAP_TEST_SECONDS - 60)
    assert run["status"] == "completed", run["error"]
    assert run["output"] == [n * 2 for n in range(items)]
    assert 1 < int(counter.read_text()) <= 10
    progress = task_of(run, "m")["progress"]
    assert progress["completed"] == items
    assert progress["in_flight"] == 0
    page = server.http.get(f"/v1/runs/{run['id']}/tasks/m/items", params={"limit": 3}).json()
    assert [i["output"] for i in page["items"]] == [0, 2, 4]
    following = server.http.get(
        f"/v1/runs/{run['id']}/tasks/m/items", params={"cursor": page["next_cursor"], "limit": 2}
    ).json()
    assert [i["index"] for i in following["items"]] == [3, 4]


def test_items_of_a_task_that_is_not_a_map_is_404(serve: Callable[..., Server]) -> None:
    """The items page answers problem+json 404 for a task that is not a map."""
    server = serve()
    register(server, {"name": "one", "tasks": {"a": {"handler": "e2e.echo"}}})
    run = server.wait_for_run(server.start("one", {}).json()["id"])
    response = server.http.get(f"/v1/runs/{run['id']}/tasks/a/items")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_child_output_becomes_the_parent_task_output(serve: Callable[..., Server]) -> None:
    """A `workflow` task starts a child run and takes its output; the child names its parent."""
    server = serve()
    register(
        server,
        {
            "name": "kid",
            "tasks": {"e": {"handler": "e2e.sync_add", "input": "${ input }"}},
            "output": "${ tasks.e.output }",
        },
    )
    register(
        server,
        {
            "name": "parent",
            "tasks": {"c": {"type": "workflow", "workflow": "kid", "input": "${ input }"}},
            "output": "${ tasks.c.output }",
        },
    )
    run = server.wait_for_run(server.start("parent", {"a": 2, "b": 3}).json()["id"])
    assert run["status"] == "completed", run
    assert run["output"] == 5
    child_id = task_of(run, "c")["child_run_id"]
    child = server.http.get(f"/v1/runs/{child_id}").json()
    assert (child["parent_run_id"], child["parent_task_id"]) == (run["id"], "c")


def test_cancelling_the_parent_cancels_its_child(serve: Callable[..., Server]) -> None:
    """A child run still running when its parent is cancelled ends cancelled too."""
    server = serve()
    register(
        server,
        {"name": "slow-kid", "tasks": {"s": {"handler": "e2e.slow", "input": {"seconds": 60}}}},
    )
    register(
        server,
        {"name": "waits", "tasks": {"c": {"type": "workflow", "workflow": "slow-kid"}}},
    )
    run_id = server.start("waits", {}).json()["id"]

    def child_id() -> str | None:
        run = server.http.get(f"/v1/runs/{run_id}").json()
        child: str | None = task_of(run, "c")["child_run_id"]
        return child

    child = wait_until(child_id)
    response = server.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "stop"})
    assert response.status_code == 202, response.text
    assert server.wait_for_run(child)["status"] == "cancelled"
    assert server.wait_for_run(run_id)["status"] == "cancelled"
