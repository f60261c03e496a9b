"""Durable sleeps and signals end to end: a sleep outlives the process, a signal can come early."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import pytest

from tests.e2e.conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

NAP = {
    "name": "nap",
    "tasks": {
        "nap": {"type": "sleep", "duration": "3s"},
        "after": {"after": ["nap"], "handler": "e2e.echo", "input": "woke"},
    },
}
APPROVAL = {
    "name": "approval",
    "tasks": {
        "prepare": {"handler": "e2e.slow", "input": {"seconds": 2}},
        "approve": {"after": ["prepare"], "type": "signal", "signal": "approve"},
        "ship": {"after": ["approve"], "handler": "e2e.echo", "input": "${ tasks.approve.output }"},
    },
    "output": "${ tasks.ship.output.input }",
}


def register(server: Server, definition: dict[str, object]) -> None:
    """Register a workflow, failing the test on anything but 200/201."""
    response = server.http.post("/v1/workflows", json=definition)
    assert response.status_code in (200, 201), response.text


def test_a_sleep_survives_a_killed_server(serve: Callable[..., Server]) -> None:
    """A durable timer set before kill -9 fires after a restart, no earlier than its due time."""
    server = serve()
    register(server, NAP)
    started = time.time()
    run_id = server.start("nap", {}).json()["id"]
    time.sleep(0.5)  # the sleep's timer is in the database by now
    server.proc.kill()
    server.proc.wait()
    run = serve().wait_for_run(run_id, timeout=60)
    assert run["status"] == "completed", run
    nap = next(t for t in run["tasks"] if t["task_id"] == "nap")
    slept = datetime.fromisoformat(nap["finished_at"]).timestamp() - started
    assert slept >= 3.0, f"the sleep ended {slept:.2f}s after the start, before its 3s"


def test_a_signal_sent_before_the_run_waits_is_kept(serve: Callable[..., Server]) -> None:
    """A signal that arrives while an earlier task runs is consumed when the run reaches it."""
    server = serve()
    register(server, APPROVAL)
    run_id = server.start("approval", {}).json()["id"]
    early = server.http.post(f"/v1/runs/{run_id}/signals/approve", json={"by": "ada"})
    assert early.status_code == 202, early.text
    assert (
        next(t for t in early.json()["tasks"] if t["task_id"] == "approve")["status"] == "pending"
    )
    run = server.wait_for_run(run_id)
    assert run["status"] == "completed", run
    assert run["output"] == {"by": "ada"}
    late = server.http.post(f"/v1/runs/{run_id}/signals/approve", json={"again": True})
    assert late.status_code == 409
    assert late.headers["content-type"].startswith("application/problem+json")
