"""SIGTERM of each role, SIGSTOP past a timeout, and database connections cut, under load."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from collections.abc import Callable

import httpx
import pytest

from tests.faults.harness import Cluster, Proc
from tests.faults.test_kills import CI, SOAK, _finish, _split

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

DRAIN_SECONDS = 10.0  # TREADLE_WORKER__DRAIN_SECONDS in the harness


def _terminate(cluster: Cluster, proc: Proc) -> tuple[bool, int, float]:
    """SIGTERM; (whether /readyz answered 503 before the exit, the exit code, seconds)."""
    proc.signal(signal.SIGTERM)
    began = time.monotonic()
    cluster.fault(f"SIGTERM {proc.roles}")
    saw_503 = False
    deadline = began + DRAIN_SECONDS + 30
    while proc.alive() and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            # A loaded process takes over a second to answer /readyz (it checks the
            # database and schema): a short timeout would miss the 503 window.
            saw_503 |= httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 503
        time.sleep(0.02)
    code = proc.popen.wait(timeout=30)
    return saw_503, code, time.monotonic() - began


@pytest.mark.parametrize("runs", [CI, SOAK])
def test_sigterm_each_role_under_load(cluster: Cluster, runs: int) -> None:
    """Each role on SIGTERM turns /readyz 503, drains or hands back its work, exits 0."""
    _split(cluster)
    outcomes: list[tuple[str, bool, int, float]] = []
    by_role = {proc.roles: proc for proc in cluster.procs}
    rounds = 1 if runs <= 30 else 3  # the soak variant goes round the roles three times
    # The worker first, while the load is heaviest (it has attempts in flight to drain);
    # each stopped process restarts while the next is stopped.
    with cluster.load(runs * 2, every=0.1):
        for _ in range(rounds):
            for role in ("worker", "orchestrator", "api"):
                time.sleep(1.0)
                outcomes.append((role, *_terminate(cluster, by_role[role])))
                cluster.restart(by_role[role], wait=False)
            for proc in cluster.procs:
                cluster.wait_ready(proc)
    _finish(cluster, "SIGTERM of each role")
    for role, saw_503, code, seconds in outcomes:
        print(f"FAULT-SCENARIO   SIGTERM {role}: exit {code} after {seconds:.1f}s, 503: {saw_503}")
    assert [code for _, _, code, _ in outcomes] == [0] * 3 * rounds, outcomes
    not_503 = [role for role, saw_503, _, _ in outcomes if not saw_503]
    assert not not_503, f"/readyz never said 503 before these exited: {not_503}"
    # The grace period bounds the drain (slack for a process stopping on a loaded machine).
    assert all(seconds < DRAIN_SECONDS + 20 for *_, seconds in outcomes), outcomes


def _reported(proc: Proc, attempt: int) -> bool:
    """Whether `proc` logged the end (failed or completed) of an attempt numbered so."""
    ends = ('"message":"attempt failed"', '"message":"attempt completed"')
    return any(
        f'"attempt":{attempt}' in line and any(end in line for end in ends)
        for line in proc.log.read_text().splitlines()
    )


def _until(what: str, check: Callable[[], bool], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within}s: {what}"
        time.sleep(0.05)


def test_worker_stopped_past_its_timeout(cluster: Cluster) -> None:
    """A SIGSTOPped worker's late result is refused; the retry's result is the one kept."""
    # The stopped worker takes one message at a time (prefetch = concurrency = 1), so the
    # broker cannot hand it the retry while it is stopped: the retry goes to the other one.
    stopped = cluster.spawn("worker", TREADLE_WORKER__CONCURRENCY="1")
    for proc in [cluster.spawn("api"), cluster.spawn("orchestrator"), stopped]:
        cluster.wait_ready(proc)
    cluster.register()
    run_id = cluster.start_run("f-slow")
    assert run_id is not None
    task = f"SELECT status, attempt, output FROM treadle_tasks WHERE run_id = '{run_id}'"
    _until("attempt 1 running", lambda: cluster.sql(task)[0][:2] == ("running", 1))
    stopped.signal(signal.SIGSTOP)
    cluster.fault("SIGSTOP worker")
    other = cluster.start("worker")  # takes the retry once attempt 1 times out (3s)
    _until("attempt 2 completed", lambda: cluster.sql(task)[0][:2] == ("completed", 2))
    kept = cluster.sql(task)[0][2]
    stopped.signal(signal.SIGCONT)
    # The woken worker finds attempt 1 past its own deadline and reports it (a late
    # result); the orchestrator must refuse it.
    _until("the late attempt 1 reported", lambda: _reported(stopped, 1))
    time.sleep(2)  # time for the late result to reach the orchestrator
    _finish(cluster, "SIGSTOP a worker past its task's timeout")
    ((status, attempt, output),) = cluster.sql(task)
    assert (status, attempt, output) == ("completed", 2, kept)
    assert json.loads(output)["pid"] == other.popen.pid, "the retry's result was not kept"
    history = cluster.sql(
        f"SELECT type, attempt FROM treadle_history WHERE run_id = '{run_id}'"
        " AND type IN ('task.timed_out', 'task.failed', 'task.completed')"
    )
    assert sorted(history) == [("task.completed", 2), ("task.timed_out", 1)], history


@pytest.mark.parametrize("runs", [CI, SOAK])
def test_database_connections_cut(cluster: Cluster, runs: int) -> None:
    """pg_terminate_backend on the test database, three times, while runs progress."""
    _split(cluster)
    with cluster.load(runs):
        for _ in range(3):
            time.sleep(1.5)
            assert cluster.terminate_backends() >= 0
        cluster.wait_loaded()
    _finish(cluster, "pg_terminate_backend while runs progress")
