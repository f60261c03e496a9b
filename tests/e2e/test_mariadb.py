"""Split roles on MariaDB: api, orchestrator and worker processes share a MariaDB state store.

The same behaviour the PostgreSQL cluster shows — branches join, a false `when` skips,
a failing task is retried by its backoff timer, the outbox drains — checked over HTTP
and in the MariaDB tables themselves.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncmy
import pytest

from tests.e2e.cluster import RABBITMQ_URL, broker_env, cluster_on, mariadb_database
from tests.e2e.conftest import Server
from tests.e2e.test_core_flows import DIAMOND, register, tasks_by_id

pytestmark = pytest.mark.e2e

FLAKY = {
    "name": "flaky",
    "tasks": {
        "try": {
            "handler": "e2e.flaky",
            "input": {"fail_times": 2},
            "retry": {"max_attempts": 3, "initial_interval": "100ms", "backoff": 2},
        }
    },
    "output": "${ tasks.try.output }",
}
DIAMONDS = 10


@pytest.mark.timeout(240)
def test_split_roles_run_diamonds_and_retries_on_mariadb(tmp_path: Path) -> None:
    """Three single-role processes on MariaDB and RabbitMQ finish every run as on PostgreSQL."""
    env = broker_env("rabbitmq", RABBITMQ_URL)
    with mariadb_database() as url, cluster_on(tmp_path, url, env) as cluster:
        api, _, _ = cluster.start("api", "orchestrator", "worker", handlers=["tests.e2e.handlers"])
        register(api, DIAMOND)
        register(api, FLAKY)
        diamonds = [_started(api, "diamond", {"n": n}) for n in range(DIAMONDS)]
        flaky = _started(api, "flaky", {})
        for n, run_id in enumerate(diamonds):
            run = api.wait_for_run(run_id, timeout=120)
            assert run["status"] == "completed", run
            assert run["output"] == {"sum": 2 * n + 3, "optional": "skipped"}
        run = api.wait_for_run(flaky, timeout=60)
        assert run["status"] == "completed", run
        assert tasks_by_id(run)["try"]["attempt"] == 3
        facts = asyncio.run(_facts(url))
        assert cluster.stop() == [0, 0, 0]
    assert facts["runs"] == {"completed": DIAMONDS + 1}
    assert facts["completions"] == {1}, "a task was completed more than once"
    assert facts["unsent"] == 0


def _started(api: Server, workflow: str, input: Any) -> str:
    response = api.start(workflow, input)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _facts(url: str) -> dict[str, Any]:
    """Run statuses, completions per task, and unsent outbox rows, read from MariaDB."""
    database = url.rsplit("/", 1)[1]
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", db=database)
    try:
        async with conn.cursor() as cursor:
            deadline = time.monotonic() + 20
            unsent = await _scalar(
                cursor, "SELECT count(*) FROM treadle_outbox WHERE sent_at IS NULL"
            )
            while unsent and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
                unsent = await _scalar(
                    cursor, "SELECT count(*) FROM treadle_outbox WHERE sent_at IS NULL"
                )
            await cursor.execute("SELECT status, count(*) FROM treadle_runs GROUP BY status")
            runs = dict(await cursor.fetchall())
            await cursor.execute(
                "SELECT count(*) FROM treadle_history WHERE type = 'task.completed'"
                " GROUP BY run_id, task_id"
            )
            completions = {row[0] for row in await cursor.fetchall()}
    finally:
        conn.close()
    return {"runs": runs, "completions": completions, "unsent": unsent}


async def _scalar(cursor: Any, sql: str) -> int:
    await cursor.execute(sql)
    row = await cursor.fetchone()
    return int(row[0])
