"""Run control over HTTP against `treadle serve`: retry from failure, pause and resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e

HANDLERS = ("--handlers", "tests.e2e.control_handlers")


def _register(server: Server, definition: dict[str, object]) -> None:
    response = server.http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text


def test_retry_resumes_a_failed_run_from_the_failed_task(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """A failed run retried after its cause is fixed completes, keeping completed outputs."""
    server = serve(*HANDLERS)
    flag = tmp_path / "fixed"
    _register(
        server,
        {
            "name": "fragile",
            "tasks": {
                "first": {"handler": "e2e.nap", "input": {"seconds": 0}},
                "flaky": {
                    "handler": "e2e.fail_until_file",
                    "after": ["first"],
                    "input": {"flag": str(flag)},
                    "retry": {"max_attempts": 1},
                },
                "last": {"handler": "e2e.nap", "after": ["flaky"], "input": {"seconds": 0}},
            },
        },
    )
    run_id = server.start("fragile", {}).json()["id"]
    failed = server.wait_for_run(run_id)
    assert failed["status"] == "failed"
    first_output = failed["tasks"][0]["output"]
    flag.write_text("ok")
    retried = server.http.post(f"/v1/runs/{run_id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "running"
    done = server.wait_for_run(run_id)
    assert done["status"] == "completed", server.tail()
    tasks = {t["task_id"]: t for t in done["tasks"]}
    assert tasks["first"]["output"] == first_output
    assert tasks["first"]["attempt"] == 1
    assert tasks["flaky"]["attempt"] == 2
    assert tasks["flaky"]["output"] == {"attempt": 2}
    history = [
        e["type"] for e in server.http.get(f"/v1/runs/{run_id}/events?limit=50").json()["items"]
    ]
    assert "run.retried" in history
    again = server.http.post(f"/v1/runs/{run_id}/retry")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


def test_pause_holds_new_tasks_and_resume_releases_them(serve: Callable[..., Server]) -> None:
    """While paused the in-flight task finishes but its successor waits for the resume."""
    server = serve(*HANDLERS)
    _register(
        server,
        {
            "name": "two-steps",
            "tasks": {
                "a": {"handler": "e2e.nap", "input": {"seconds": 0.5}},
                "b": {"handler": "e2e.nap", "after": ["a"], "input": {"seconds": 0}},
            },
        },
    )
    run_id = server.start("two-steps", {}).json()["id"]
    paused = server.http.post(f"/v1/runs/{run_id}/pause")
    assert paused.status_code == 202, paused.text
    assert paused.json()["paused"] is True
    deadline = time.monotonic() + 15
    run = paused.json()
    while time.monotonic() < deadline:
        run = server.http.get(f"/v1/runs/{run_id}").json()
        if run["tasks"][0]["status"] == "completed":
            break
        time.sleep(0.1)
    time.sleep(0.5)  # time for b to be dispatched, were the pause not holding it
    run = server.http.get(f"/v1/runs/{run_id}").json()
    assert [t["status"] for t in run["tasks"]] == ["completed", "pending"], run
    assert run["status"] == "running"
    resumed = server.http.post(f"/v1/runs/{run_id}/resume")
    assert resumed.status_code == 202
    assert resumed.json()["paused"] is False
    assert server.wait_for_run(run_id)["status"] == "completed"
    finished = server.http.post(f"/v1/runs/{run_id}/pause")
    assert finished.status_code == 409


def test_versions_are_listed_and_runs_keep_theirs(serve: Callable[..., Server]) -> None:
    """A run without a version takes the latest; GET /v1/workflows/{name} lists versions."""
    server = serve(*HANDLERS)
    base = {"name": "versioned", "tasks": {"a": {"handler": "e2e.nap", "input": {"seconds": 0}}}}
    _register(server, base)
    _register(server, {**base, "description": "second"})
    detail = server.http.get("/v1/workflows/versioned").json()
    assert [v["version"] for v in detail["versions"]] == [2, 1]
    latest = server.start("versioned", {}).json()
    assert latest["version"] == 2
    pinned = server.http.post("/v1/runs", json={"workflow": "versioned", "version": 1}).json()
    assert pinned["version"] == 1
    assert server.wait_for_run(pinned["id"])["version"] == 1
