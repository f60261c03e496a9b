"""Scale-out: 2 api, 2 orchestrator and 3 worker processes on PostgreSQL and each broker.

Runs of a fan-out workflow are started over both api processes at once; the test waits
for them through the list endpoint, then checks the database itself: every run
completed, every task completed exactly once in history, no outbox row left unsent, and
the ledger the handler writes shows the work spread over all three workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.cluster import NATS_URL, RABBITMQ_URL, broker_env, cluster_on, postgres_database
from tests.e2e.conftest import Server
from tests.e2e.scale_handlers import LEDGER_DDL

pytestmark = pytest.mark.e2e

BRANCHES = 5
FANOUT = {
    "name": "fanout",
    "tasks": {
        "start": {"handler": "scale.ledger", "input": "${ input }"},
        **{
            f"branch{i}": {"after": ["start"], "handler": "scale.ledger", "input": {"i": i}}
            for i in range(BRANCHES)
        },
        "join": {
            "after": [f"branch{i}" for i in range(BRANCHES)],
            "handler": "scale.ledger",
            "input": {"join": True},
        },
    },
}
TASKS_PER_RUN = BRANCHES + 2
FAILED = ("failed", "cancelled", "timed_out")
CLIENTS = 8
"""Concurrent starters: enough to keep both api processes busy, few enough for 2 cores."""


@pytest.fixture(scope="module")
def tansu() -> Iterator[str]:
    """A Tansu (Kafka-protocol) broker for this module's Kafka tests."""
    from tests.integration.transports._tansu import running_tansu  # noqa: PLC0415 -- lazy

    with running_tansu() as address:
        yield address


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that puts a cluster on the broker this test is parametrised with."""
    kind = request.param
    if kind == "kafka":
        return broker_env("kafka", request.getfixturevalue("tansu"))
    return broker_env(kind, {"rabbitmq": RABBITMQ_URL, "nats": NATS_URL}[kind])


def _soak(kind: str, runs: int) -> Any:
    return pytest.param(kind, runs, id=f"{kind}-{runs}", marks=pytest.mark.soak)


# The size, 500 runs per broker, takes 30-45 s each on 2 cores; `--soak` adds
# 2,000-run variants.
@pytest.mark.timeout(420)
@pytest.mark.parametrize(
    ("broker", "runs"),
    [
        pytest.param("rabbitmq", 500, id="rabbitmq-500"),
        pytest.param("nats", 500, id="nats-500"),
        pytest.param("kafka", 500, id="kafka-500"),
        _soak("rabbitmq", 2000),
        _soak("nats", 2000),
        _soak("kafka", 2000),
    ],
    indirect=["broker"],
)
def test_split_roles_complete_every_run_and_task_exactly_once(
    broker: dict[str, str], runs: int, tmp_path: Path
) -> None:
    """Every run of a fan-out completes across 7 processes; each task completes once."""
    with postgres_database() as url, cluster_on(tmp_path, url, broker) as cluster:
        asyncio.run(_execute(url, LEDGER_DDL))
        servers = cluster.start(
            "api", "api", "orchestrator", "orchestrator", "worker", "worker", "worker",
            handlers=["tests.e2e.scale_handlers"],
        )  # fmt: skip
        apis = servers[:2]
        assert apis[0].http.post("/v1/workflows", json=FANOUT).status_code == 201
        began = time.monotonic()
        ids = _start_runs(apis, runs)
        _wait_until_completed(apis[1], runs, timeout=300, logs=cluster.logs)
        print(f"{runs} runs on {broker['TREADLE_TRANSPORT']}: {time.monotonic() - began:.1f}s")
        facts = asyncio.run(_facts(url, settle_seconds=20))
        exit_codes = cluster.stop()
    _check(facts, set(ids), runs)
    assert exit_codes == [0] * 7, exit_codes


def _start_runs(apis: list[Server], runs: int) -> list[str]:
    """Start `runs` runs, round robin over the api processes, CLIENTS at a time."""

    def start(i: int) -> str:
        response = apis[i % len(apis)].start("fanout", {"i": i})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(start, range(runs)))


def _count(api: Server, status: str, *, stop_at: int | None = None) -> int:
    """How many fanout runs have `status`, paging through the list endpoint."""
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"workflow": "fanout", "status": status, "limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = api.http.get("/v1/runs", params=params).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None or (stop_at is not None and total >= stop_at):
            return total


def _wait_until_completed(api: Server, runs: int, timeout: float, logs: Any) -> None:
    deadline = time.monotonic() + timeout
    completed = 0
    while time.monotonic() < deadline:
        completed = _count(api, "completed")
        if completed == runs:
            return
        bad = {status: _count(api, status, stop_at=1) for status in FAILED}
        assert not any(bad.values()), f"runs ended badly: {bad}\n{logs()}"
        time.sleep(1)
    pytest.fail(f"{completed}/{runs} runs completed after {timeout}s\n{logs()}")


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _facts(url: str, settle_seconds: float) -> dict[str, Any]:
    """What the database says, once the outbox relay has had time to mark the last rows."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        deadline = time.monotonic() + settle_seconds
        unsent = await conn.fetchval("SELECT count(*) FROM treadle_outbox WHERE sent_at IS NULL")
        while unsent and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            unsent = await conn.fetchval(
                "SELECT count(*) FROM treadle_outbox WHERE sent_at IS NULL"
            )
        q = conn.fetch
        return {
            "unsent": unsent,
            "runs": await q("SELECT id, status FROM treadle_runs"),
            "tasks": await q(
                "SELECT status, attempt, count(*) AS n FROM treadle_tasks GROUP BY 1, 2"
            ),
            "completions": await q(
                "SELECT run_id, task_id, count(*) AS n FROM treadle_history"
                " WHERE type = 'task.completed' GROUP BY 1, 2"
            ),
            "ledger": await q(
                "SELECT run_id, task_id, count(*) AS n FROM scale_ledger GROUP BY 1, 2"
            ),
            "pids": await q("SELECT pid, count(*) AS n FROM scale_ledger GROUP BY 1"),
        }
    finally:
        await conn.close()


def _check(facts: dict[str, Any], ids: set[str], runs: int) -> None:
    """The database's account of the test: complete, exactly once, spread out, flushed."""
    assert {r["id"] for r in facts["runs"]} == ids
    assert {r["status"] for r in facts["runs"]} == {"completed"}
    tasks = {(r["status"], r["attempt"]): r["n"] for r in facts["tasks"]}
    assert tasks == {("completed", 1): runs * TASKS_PER_RUN}, tasks
    completions = [r["n"] for r in facts["completions"]]
    assert len(completions) == runs * TASKS_PER_RUN
    assert set(completions) == {1}, "a task was completed more than once"
    executed = {(r["run_id"], r["task_id"]) for r in facts["ledger"]}
    assert executed == {(r["run_id"], r["task_id"]) for r in facts["completions"]}
    pids = {r["pid"]: r["n"] for r in facts["pids"]}
    assert len(pids) == 3, f"work did not reach all three workers: {pids}"
    assert facts["unsent"] == 0
    duplicates = sum(r["n"] - 1 for r in facts["ledger"])
    print(f"executions per worker {sorted(pids.values())}, redelivered executions {duplicates}")
