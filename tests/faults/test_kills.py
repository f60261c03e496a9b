"""kill -9 of each role, at each crash point, and of everything at once, under load."""

from __future__ import annotations

import signal
import time

import pytest

from tests.faults.harness import Cluster, Proc

# A scenario takes ~15-30 s on a quiet 2-core machine with the CI load (several times that
# on a loaded one, where process start-up alone takes 5-25 s); the soak variants run a
# longer load and the remaining scenarios, with --soak.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

CI = pytest.param(30, id="ci")
SOAK = pytest.param(150, id="soak", marks=pytest.mark.soak)
ci_and_soak = pytest.mark.parametrize("runs", [CI, SOAK])
soak_only = pytest.mark.parametrize("runs", [SOAK])

# Seconds from the last fault until every accepted run is terminal. Generous: on a loaded
# machine a restarted process alone takes up to ~25 s to import and connect.
RECOVERY_BOUND = 120.0


def _split(cluster: Cluster, **crash: str) -> None:
    cluster.start_all("api", "orchestrator", "worker", **crash)
    cluster.register()


def _finish(cluster: Cluster, name: str) -> None:
    recovery = cluster.settle()
    report = cluster.check()
    report.recovery_seconds = recovery
    report.show(name)
    assert report.runs > 0
    assert report.faults > 0
    assert recovery < RECOVERY_BOUND


def _kill_and_restart(cluster: Cluster, proc: Proc, times: int, gap: float) -> None:
    """`times` rounds of: let the load run `gap` seconds, kill -9 `proc`, restart it."""
    for _ in range(times):
        time.sleep(gap)
        cluster.kill(proc)
        cluster.restart(proc)


@soak_only
def test_worker_killed_mid_task(cluster: Cluster, runs: int) -> None:
    """A worker killed -9 with attempts in flight: the broker redelivers, nothing is lost."""
    _split(cluster)
    worker = next(p for p in cluster.procs if p.roles == "worker")
    with cluster.load(runs):
        _kill_and_restart(cluster, worker, times=3, gap=2)
        cluster.wait_loaded()
    _finish(cluster, "worker kill -9 mid-task")


CRASH_POINTS = [
    ("worker", "after_effect_before_publish:5"),
    ("worker", "after_publish_before_ack:5"),
    ("orchestrator", "after_commit_before_publish:5"),
    ("orchestrator", "after_publish_before_mark_sent:5"),
    ("orchestrator", "after_decision_before_ack:5"),
    ("api", "after_create_before_response:3"),
]
# In every CI run: the two worst moments (a handler's effect done but unreported; a
# decision committed but its messages unrelayed). The rest run with --soak.
CI_CRASH_POINTS = CRASH_POINTS[0], CRASH_POINTS[2]


@pytest.mark.parametrize(
    ("role", "point", "runs"),
    [
        *[pytest.param(r, p, 30, id=f"{r}-{p}-ci") for r, p in CI_CRASH_POINTS],
        *[
            pytest.param(r, p, 100, id=f"{r}-{p}-soak", marks=pytest.mark.soak)
            for r, p in CRASH_POINTS
        ],
    ],
)
def test_crash_point(cluster: Cluster, role: str, point: str, runs: int) -> None:
    """A process dies (exit 137) at a named crash point; restarted, it loses nothing."""
    _split(cluster, **{role: point})
    with cluster.load(runs):
        cluster.wait_loaded()
        cluster.revive_crashed()
    _finish(cluster, f"crash at {point} ({role})")
    assert any(name.startswith("crash point") for name in cluster.faults), cluster.faults


@soak_only
def test_orchestrator_killed_mid_decisions(cluster: Cluster, runs: int) -> None:
    """Two orchestrators; one is killed -9 repeatedly while deciding: the other carries on."""
    _split(cluster)
    spare = cluster.start("orchestrator")
    with cluster.load(runs, every=0.05):
        _kill_and_restart(cluster, spare, times=3, gap=1.5)
        cluster.wait_loaded()
    _finish(cluster, "orchestrator kill -9 mid-decisions")


@soak_only
def test_api_killed_during_starts(cluster: Cluster, runs: int) -> None:
    """The api dies during starts; clients retry their key and get exactly one run each."""
    _split(cluster)
    api = next(p for p in cluster.procs if p.roles == "api")
    with cluster.load(runs, every=0.03):
        _kill_and_restart(cluster, api, times=3, gap=1.5)
        cluster.wait_loaded()
    _finish(cluster, "api kill -9 during starts")


@ci_and_soak
def test_everything_killed_at_once(cluster: Cluster, runs: int) -> None:
    """Every process killed -9 together, then restarted: each run still finishes once."""
    _split(cluster)
    with cluster.load(runs):
        time.sleep(2)
        for proc in cluster.procs:
            proc.signal(signal.SIGKILL)
        for proc in cluster.procs:
            proc.popen.wait()
        cluster.fault("kill -9 every process")
        for proc in cluster.procs:
            cluster.restart(proc, wait=False)
        for proc in cluster.procs:
            cluster.wait_ready(proc)
        cluster.wait_loaded()
    _finish(cluster, "kill -9 everything (PostgreSQL + RabbitMQ)")


@soak_only
def test_everything_killed_in_process_transport(memory_cluster: Cluster, runs: int) -> None:
    """One all-roles process on SQLite killed -9 twice: start-up recovery re-dispatches."""
    proc = memory_cluster.start("api,orchestrator,worker")
    memory_cluster.register()
    with memory_cluster.load(runs):
        _kill_and_restart(memory_cluster, proc, times=2, gap=2.5)
        memory_cluster.wait_loaded()
    _finish(memory_cluster, "kill -9 everything (SQLite + in-process transport)")


EAGER_ENV = {
    # Short leases and a quick sweep, so a dead process's leased dispatches go out soon.
    "TREADLE_WORKER__EAGER_LEASE_SECONDS": "2",
    "TREADLE_ORCHESTRATOR__OUTBOX_STALE_SECONDS": "1",
    "TREADLE_ORCHESTRATOR__SWEEP_INTERVAL_SECONDS": "0.5",
}


@ci_and_soak
def test_all_roles_process_killed_with_eager_attempts(cluster: Cluster, runs: int) -> None:
    """Two all-roles processes on PostgreSQL + RabbitMQ, each running the dispatches it
    decides itself (eager, leased); the one taking the starts is killed -9 three times:
    the attempts it held leased go out once their leases run out, and each run finishes
    once with nothing lost."""
    victim = cluster.start("api,orchestrator,worker", **EAGER_ENV)  # first: the load's api
    cluster.start("api,orchestrator,worker", **EAGER_ENV)
    cluster.register()
    with cluster.load(runs):
        _kill_and_restart(cluster, victim, times=3, gap=2)
        cluster.wait_loaded()
    _finish(cluster, "kill -9 an all-roles process running eager attempts")
