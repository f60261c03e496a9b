"""The core engine end to end: `treadle serve` as a subprocess, driven over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

DIAMOND = {
    "name": "diamond",
    "input_schema": {"type": "object", "required": ["n"]},
    "tasks": {
        "start": {"handler": "e2e.echo", "input": "${ input }"},
        "left": {
            "after": ["start"],
            "handler": "e2e.sync_add",
            "input": {"a": "${ input.n }", "b": 1},
        },
        "right": {
            "after": ["start"],
            "handler": "e2e.sync_add",
            "input": {"a": "${ input.n }", "b": 2},
        },
        "join": {
            "after": ["left", "right"],
            "handler": "e2e.sync_add",
            "input": {"a": "${ tasks.left.output }", "b": "${ tasks.right.output }"},
        },
        "optional": {"after": ["start"], "when": "${ input.n > `100` }", "handler": "e2e.echo"},
        "after_optional": {"after": ["optional"], "handler": "e2e.echo"},
    },
    "output": {"sum": "${ tasks.join.output }", "optional": "${ tasks.optional.status }"},
}


def register(server: Server, definition: dict[str, Any]) -> None:
    """Register a workflow and check the API's answer."""
    response = server.http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text
    assert response.json()["name"] == definition["name"]


def tasks_by_id(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The run's task list keyed by task id."""
    return {task["task_id"]: task for task in run["tasks"]}


def test_diamond_with_a_skipped_branch(serve: Callable[..., Server]) -> None:
    """Parallel branches join, a false `when` skips its task and everything after it."""
    server = serve()
    register(server, DIAMOND)
    response = server.start("diamond", {"n": 5})
    assert response.status_code == 201, response.text
    run = server.wait_for_run(response.json()["id"])
    assert run["status"] == "completed", run
    assert run["output"] == {"sum": 13, "optional": "skipped"}
    tasks = tasks_by_id(run)
    assert {t: tasks[t]["status"] for t in tasks} == {
        "start": "completed",
        "left": "completed",
        "right": "completed",
        "join": "completed",
        "optional": "skipped",
        "after_optional": "skipped",
    }
    events = server.http.get(f"/v1/runs/{run['id']}/events").json()
    types = [entry["type"] for entry in events["items"]]
    assert types[0] == "run.started"
    assert types[-1] == "run.completed"


def test_task_fails_twice_then_succeeds(serve: Callable[..., Server]) -> None:
    """A failing task is retried with backoff and its third attempt's output is kept."""
    server = serve()
    register(
        server,
        {
            "name": "flaky",
            "tasks": {
                "try": {
                    "handler": "e2e.flaky",
                    "input": {"fail_times": 2},
                    "retry": {"max_attempts": 3, "initial_interval": "100ms", "backoff": 2},
                }
            },
            "output": "${ tasks.try.output }",
        },
    )
    run = server.wait_for_run(server.start("flaky", {}).json()["id"])
    assert run["status"] == "completed", run
    assert run["output"] == {"attempts": 3}
    assert tasks_by_id(run)["try"]["attempt"] == 3
    events = server.http.get(f"/v1/runs/{run['id']}/events").json()["items"]
    failures = [e for e in events if e["type"] == "task.failed"]
    assert [f["attempt"] for f in failures] == [1, 2]


def test_task_that_times_out_fails_the_run(serve: Callable[..., Server]) -> None:
    """An attempt past its timeout with no retries left leaves the task timed_out."""
    server = serve()
    register(
        server,
        {
            "name": "too-slow",
            "tasks": {"nap": {"handler": "e2e.slow", "input": {"seconds": 10}, "timeout": "500ms"}},
        },
    )
    run = server.wait_for_run(server.start("too-slow", {}).json()["id"])
    assert run["status"] == "failed", run
    assert tasks_by_id(run)["nap"]["status"] == "timed_out"
    assert run["error"]["type"] == "TaskFailed"


def test_cancelled_run(serve: Callable[..., Server]) -> None:
    """Cancelling a running run ends it and its running task as cancelled."""
    server = serve()
    register(
        server,
        {"name": "long", "tasks": {"nap": {"handler": "e2e.slow", "input": {"seconds": 30}}}},
    )
    run_id = server.start("long", {}).json()["id"]
    cancel = server.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "changed my mind"})
    assert cancel.status_code == 202, cancel.text
    run = server.wait_for_run(run_id)
    assert run["status"] == "cancelled"
    assert tasks_by_id(run)["nap"]["status"] == "cancelled"
    again = server.http.post(f"/v1/runs/{run_id}/cancel", json={})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_idempotent_start(serve: Callable[..., Server]) -> None:
    """The same Idempotency-Key returns the same run: 201 first, then 200."""
    server = serve()
    register(server, DIAMOND)
    first = server.start("diamond", {"n": 1}, **{"Idempotency-Key": "order-7"})
    second = server.start("diamond", {"n": 1}, **{"Idempotency-Key": "order-7"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    listed = server.http.get("/v1/runs", params={"workflow": "diamond"}).json()
    assert [r["id"] for r in listed["items"]] == [first.json()["id"]]


def test_bad_requests_get_problem_details(serve: Callable[..., Server]) -> None:
    """Malformed JSON, unknown workflows, invalid input and unknown runs are clear 4xx."""
    server = serve()
    register(server, DIAMOND)
    cases = [
        server.http.post(
            "/v1/runs", content=b"{not json", headers={"content-type": "application/json"}
        ),
        server.start("no-such-workflow", {}),
        server.start("diamond", {"wrong": True}),
        server.http.get("/v1/runs/does-not-exist"),
        server.http.get("/v1/runs", params={"cursor": "garbage"}),
        server.http.post(
            "/v1/workflows", json={"name": "x", "tasks": {"a": {"after": ["b"], "handler": "h"}}}
        ),
    ]
    assert [c.status_code for c in cases] == [400, 404, 422, 404, 400, 422]
    for case in cases:
        assert case.headers["content-type"].startswith("application/problem+json"), case.text
        assert case.json()["detail"]
    errors = cases[-1].json()["errors"]
    assert any(e["path"] == "tasks.a.after[0]" for e in errors), errors


def test_run_survives_restart(serve: Callable[..., Server]) -> None:
    """A task in flight when the server stops is dispatched again after a restart."""
    server = serve()
    register(
        server,
        {"name": "restart", "tasks": {"nap": {"handler": "e2e.slow", "input": {"seconds": 1.5}}}},
    )
    run_id = server.start("restart", {}).json()["id"]
    server.proc.kill()
    server.proc.wait()
    again = serve()
    run = again.wait_for_run(run_id)
    assert run["status"] == "completed", run
