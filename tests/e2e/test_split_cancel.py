"""A cancel on a split deployment reaches the worker process holding the attempt.

api, orchestrator and worker run as three `treadle serve` processes on PostgreSQL and
RabbitMQ. While an async handler sleeps and a sync one works in small steps, the run is
cancelled through the api process; the `task.cancel` broadcast crosses the broker to the
worker, and each handler itself notices (it writes a marker file), long before it would
have finished on its own.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.cluster import RABBITMQ_URL, Cluster, broker_env, cluster_on, postgres_database

pytestmark = pytest.mark.e2e

HANDLER_SECONDS = 600.0
"""How long each handler would run if no cancel reached it: past the test's timeout."""
NOTICE_SECONDS = 90.0
"""How long a handler may take to notice its cancel (generous: two busy cores)."""
MARKERS = ("async", "sync")


def _workflow(marker_dir: Path) -> dict[str, object]:
    given = {"marker_dir": str(marker_dir), "seconds": HANDLER_SECONDS}
    return {
        "name": "cancel-me",
        "tasks": {
            "async": {"handler": "e2e.sleep_until_cancelled", "input": given, "timeout": "15m"},
            "sync": {"handler": "e2e.poll_until_cancelled", "input": given, "timeout": "15m"},
        },
    }


def _wait_for_files(paths: list[Path], cluster: Cluster, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if all(p.exists() for p in paths):
            return
        time.sleep(0.1)
    missing = [p.name for p in paths if not p.exists()]
    pytest.fail(f"no {missing} after {seconds}s:\n{cluster.logs()}")


@pytest.mark.timeout(420)
def test_a_cancel_through_the_api_reaches_the_handlers_in_the_worker_process(
    tmp_path: Path,
) -> None:
    """The async handler sees CancelledError and the sync one `ctx.cancelled`; the run ends
    cancelled, and neither handler ran to its end."""
    marker_dir = tmp_path / "markers"
    marker_dir.mkdir()
    env = broker_env("rabbitmq", RABBITMQ_URL)
    with postgres_database() as url, cluster_on(tmp_path, url, env) as cluster:
        api, _, _ = cluster.start(
            "api", "orchestrator", "worker", handlers=["tests.e2e.control_handlers"]
        )
        assert api.http.post("/v1/workflows", json=_workflow(marker_dir)).status_code == 201
        started = api.start("cancel-me", {})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        _wait_for_files([marker_dir / f"{m}-started" for m in MARKERS], cluster, NOTICE_SECONDS)
        cancel = api.http.post(f"/v1/runs/{run_id}/cancel", json={"reason": "e2e"})
        assert cancel.status_code == 202, cancel.text
        # Within NOTICE_SECONDS, far less than HANDLER_SECONDS: the cancel, not their end.
        _wait_for_files([marker_dir / f"{m}-cancelled" for m in MARKERS], cluster, NOTICE_SECONDS)
        run = api.wait_for_run(run_id, timeout=NOTICE_SECONDS)
        assert cluster.stop() == [0, 0, 0], cluster.logs()

    assert run["status"] == "cancelled", run
    assert {t["status"] for t in run["tasks"]} == {"cancelled"}, run["tasks"]
    assert [(marker_dir / f"{m}-cancelled").read_text() for m in MARKERS] == ["1", "1"]
