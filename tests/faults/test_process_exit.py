"""A handler that ends its own process (`os._exit`) on its first attempt, in the all-in-one
`treadle serve` on SQLite and the in-process transport (and on Kafka with PostgreSQL),
restarted by a supervisor.

`os._exit` in a handler takes the whole process with it: the API, the orchestrator and the
worker. "Serves throughout" therefore means what a supervisor (systemd `Restart=always`, a
Kubernetes restart policy) makes of it: the process is started again after each death, the
deaths are bounded by the design, and the process then stays up and serves.

The bound: start-up recovery counts each re-dispatch of an attempt in flight as one more
delivery, and a worker runs deliveries 1 to `worker.lost_after_deliveries - 1` (3 - 1 = 2)
only; the next one fails the attempt with `AttemptLost`, by its retry policy. A kill -9
looks the same as `os._exit` to the restarted process, so the first death cannot be held
against the attempt (a plain kill would then fail every `max_attempts: 1` run in flight):
an attempt that kills its process on every delivery costs exactly 2 deaths. On Kafka the
broker hands a dead consumer's records back with their old count, so the count is the
worker's own, written to the database before each delivery runs: the same 2 deaths. On
RabbitMQ the first delivery is an eager one (from the outbox row, in the deciding process):
the row, published once its lease runs out, carries that delivery in a header.

Each scenario starts the process three times; on a loaded 2-core machine that alone takes
up to a minute or two.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.handlers import EXIT_CODE
from tests.faults.harness import Cluster, Supervisor
from tests.faults.private_brokers import PrivateBroker, TansuBroker

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ALL_ROLES = "api,orchestrator,worker"
LOST_AFTER_DELIVERIES = 3  # worker.lost_after_deliveries, its default
DEATHS = [EXIT_CODE] * (LOST_AFTER_DELIVERIES - 1)
"""Deliveries 1 and 2 of attempt 1 run and end the process; delivery 3 is not run."""
STEADY_SECONDS = 3.0
"""How long the process is watched after the last run: a crash loop would show in it."""


@pytest.fixture
def tansu() -> Iterator[PrivateBroker]:
    """A Tansu broker of this test's own, started; killed and removed after."""
    broker = TansuBroker()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()


def _exiting(name: str, max_attempts: int) -> dict[str, Any]:
    retry = {"max_attempts": max_attempts, "initial_interval": "200ms"}
    # A long start-to-close timeout: attempt 1 must end by its lost deliveries, not time
    # out while the process restarts (a Kafka consumer group takes seconds to rebalance).
    task = {"handler": "fault.exit_first", "retry": retry, "timeout": "120s"}
    return {"name": name, "tasks": {"boom": task}}


def _start(cluster: Cluster, *definitions: dict[str, Any]) -> Supervisor:
    """The all-in-one process, the suite's workflows and `definitions` registered."""
    proc = cluster.start(ALL_ROLES)
    cluster.register()
    for definition in definitions:
        answer = httpx.post(f"{proc.url}/v1/workflows", json=definition, timeout=10)
        assert answer.status_code in (200, 201), answer.text
    # Past the bound by a margin, a crash loop fails the test without waiting for it.
    return Supervisor(cluster, proc, crash_loop=len(DEATHS) + 3)


def _executions(cluster: Cluster, run_id: str) -> dict[int, set[int]]:
    """Attempt -> the pids that ran it, from the handler's own ledger."""
    ran: dict[int, set[int]] = {}
    for attempt, pid in cluster.ledger_rows(
        f"SELECT attempt, pid FROM fault_ledger WHERE run_id = '{run_id}'"
    ):
        ran.setdefault(attempt, set()).add(pid)
    return ran


def _serves_steadily(supervisor: Supervisor, others: list[str]) -> None:
    """Other runs complete, the process stays up (no death in a quiet spell) and serves."""
    for run_id in others:
        assert supervisor.wait_terminal(run_id)["status"] == "completed", run_id
    deaths = list(supervisor.deaths)
    pid = supervisor.proc.popen.pid
    time.sleep(STEADY_SECONDS)
    supervisor.revive()
    assert supervisor.deaths == deaths, "the process died again after the runs ended"
    assert supervisor.proc.popen.pid == pid
    assert httpx.get(f"{supervisor.proc.url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{supervisor.proc.url}/readyz", timeout=10).status_code == 200


def test_exit_on_first_attempt_completes_on_the_second(memory_cluster: Cluster) -> None:
    """A handler calling os._exit(3) on attempt 1: the process dies exactly twice (attempt
    1's deliveries 1 and 2), attempt 1 fails AttemptLost, the run completes on attempt 2,
    and the restarted process serves other runs and stays up."""
    _exit_on_first_attempt(memory_cluster, "in-process transport")


def test_exit_on_first_attempt_on_kafka(tmp_path: Path, tansu: PrivateBroker) -> None:
    """The same on Kafka (Tansu, PostgreSQL): the records the dead process held come back
    with the broker's old count, so the worker counts deliveries in the database; without
    that, attempt 1 is read and run again after every restart, a crash loop."""
    cluster = Cluster(tmp_path, transport="kafka", broker_url=tansu.url, broker_env=tansu.env)
    try:
        _exit_on_first_attempt(cluster, "kafka")
    finally:
        cluster.close()


def test_exit_on_first_attempt_on_rabbitmq(tmp_path: Path) -> None:
    """The same on RabbitMQ (PostgreSQL): attempt 1 runs eagerly first, from its leased
    outbox row; once the lease runs out the row goes to the broker marked as delivered once
    already, so the broker's redelivery after the second death is the third delivery. Without
    the mark the broker would count from 1 and the process would die a third time."""
    lease = {"TREADLE_WORKER__EAGER_LEASE_SECONDS": "3"}
    cluster = Cluster(tmp_path, transport="rabbitmq", broker_env=lease)
    try:
        _exit_on_first_attempt(cluster, "rabbitmq, eager first")
    finally:
        cluster.close()


def _exit_on_first_attempt(cluster: Cluster, transport: str) -> None:
    supervisor = _start(cluster, _exiting("f-exit", max_attempts=3))
    before = [cluster.start_run("f-seq") for _ in range(3)]
    assert all(before)
    poison = supervisor.start_run("f-exit")
    run = supervisor.wait_terminal(poison)
    after = [supervisor.start_run("f-seq") for _ in range(3)]
    _serves_steadily(supervisor, [r for r in before if r] + after)

    assert run["status"] == "completed", run
    [task] = run["tasks"]
    assert (task["status"], task["attempt"]) == ("completed", 2), task
    assert task["output"]["attempt"] == 2
    assert supervisor.deaths == DEATHS
    ran = _executions(cluster, poison)
    assert len(ran[1]) == LOST_AFTER_DELIVERIES - 1, ran  # two processes ran attempt 1
    assert len(ran[2]) == 1, ran
    assert task["output"]["pid"] in ran[2]
    lost = _failures(supervisor, poison)
    assert [(a, e["type"]) for a, e in lost] == [(1, "AttemptLost")], lost
    print(
        f"\nFAULT-SCENARIO os._exit on attempt 1 ({transport}): "
        f"deaths={len(supervisor.deaths)} attempts=2"
    )


def test_exit_with_one_attempt_fails_attempt_lost(memory_cluster: Cluster) -> None:
    """With max_attempts 1 the same handler fails the run with AttemptLost after the same
    two deaths, instead of looping; the process then serves other runs and stays up."""
    supervisor = _start(memory_cluster, _exiting("f-exit-once", max_attempts=1))
    poison = supervisor.start_run("f-exit-once")
    run = supervisor.wait_terminal(poison)
    after = [supervisor.start_run("f-seq") for _ in range(3)]
    _serves_steadily(supervisor, after)

    assert run["status"] == "failed", run
    [task] = run["tasks"]
    assert (task["status"], task["attempt"]) == ("failed", 1), task
    assert task["error"]["type"] == "AttemptLost", task
    assert "delivered 3 times and never finished" in task["error"]["message"]
    assert supervisor.deaths == DEATHS
    ran = _executions(memory_cluster, poison)
    assert list(ran) == [1]
    assert len(ran[1]) == LOST_AFTER_DELIVERIES - 1, ran
    print(f"\nFAULT-SCENARIO os._exit, max_attempts 1: deaths={len(supervisor.deaths)} failed")


def _failures(supervisor: Supervisor, run_id: str) -> list[tuple[int, dict[str, Any]]]:
    """(attempt, error) of each task.failed in the run's history."""
    answer = httpx.get(f"{supervisor.proc.url}/v1/runs/{run_id}/events?limit=500", timeout=10)
    assert answer.status_code == 200, answer.text
    return [
        (event["attempt"], event["data"]["error"])
        for event in answer.json()["items"]
        if event["type"] == "task.failed"
    ]
