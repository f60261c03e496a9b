"""A private broker (NATS, RabbitMQ, Tansu) killed -9 or stopped, then started again on the
same port and store, while a steady load runs: every accepted run still completes once.

Tansu keeps nothing across a restart here (memory storage is all this build offers without
S3; see private_brokers.py), so for Kafka the engine runs with a schedule-to-start limit
(`orchestrator.default_schedule_to_start_timeout`): a dispatch the broker took with it is
sent again once that long has passed without a start, and a lost result is ended by the
attempt's start-to-close timeout and retried. So on Kafka too every accepted run, in
flight at the restart or not, completes exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.faults.harness import TERMINAL, Cluster
from tests.faults.private_brokers import BROKERS, PrivateBroker
from tests.faults.test_kills import RECOVERY_BOUND, _split

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

DOWN_SECONDS = 2.0  # the broker stays down this long: clients meet refused connections
LOAD_BEFORE_SECONDS = 2.5  # load in flight before the fault
# A broker that keeps nothing: how long runs in flight at its restart get to finish after
# every later run has (longer than a task's 8 s timeout plus its retries' backoff, and than
# the schedule-to-start limit below with its second, doubled wait).
LOST_GRACE_SECONDS = 30.0
SCHEDULE_TO_START_SECONDS = 5  # re-send a dispatch the restarted broker lost after this long


@dataclass
class Restart:
    """What one broker restart cost."""

    down: float = 0.0
    """Seconds from the fault until the broker served clients again."""
    boot: float = 0.0
    """Seconds the broker itself took to start again."""
    first_progress: float = 0.0
    """Seconds from the broker back until the engine completed a task again."""
    probe: float = 0.0
    """Seconds from the broker back until a run started then had completed."""
    at_risk: set[str] = field(default_factory=set)
    """Runs accepted before the broker was back (all a broker that keeps nothing can lose)."""


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> Iterator[PrivateBroker]:
    """A private broker of the kind in `request.param`, started; killed and removed after."""
    made = BROKERS[request.param]()
    try:
        made.start()
        yield made
    finally:
        made.close()


@pytest.fixture
def broker_cluster(tmp_path: Path, broker: PrivateBroker) -> Iterator[Cluster]:
    """A cluster (fresh PostgreSQL database) on the private broker; nothing started yet.
    On a broker that keeps nothing across a restart, lost dispatches are sent again."""
    env = dict(broker.env)
    if not broker.keeps_data:
        key = "TREADLE_ORCHESTRATOR__DEFAULT_SCHEDULE_TO_START_TIMEOUT"
        env[key] = str(SCHEDULE_TO_START_SECONDS)
    made = Cluster(tmp_path, transport=broker.kind, broker_url=broker.url, broker_env=env)
    try:
        yield made
    finally:
        made.close()


def _completed_tasks(cluster: Cluster) -> int:
    rows = cluster.sql("SELECT count(*) FROM treadle_history WHERE type = 'task.completed'")
    return int(rows[0][0])


def _restart(cluster: Cluster, broker: PrivateBroker, graceful: bool) -> Restart:
    """Stop the broker (SIGKILL or its graceful stop), keep it down, start it again, then
    time how long the engine takes to make progress and to run a fresh run end to end."""
    began = time.monotonic()
    if graceful:
        broker.stop()
    else:
        broker.kill()
    cluster.fault(f"{broker.kind} {'graceful stop' if graceful else 'kill -9'} + restart")
    time.sleep(DOWN_SECONDS)
    restart = Restart(boot=broker.start())
    back = time.monotonic()
    restart.down = back - began
    restart.at_risk = set(cluster.journal.accepted().values())
    done_before = _completed_tasks(cluster)
    probe = cluster.start_run("f-seq")
    assert probe is not None, "the api refused a run after the broker restart"
    deadline = back + RECOVERY_BOUND
    while time.monotonic() < deadline and not restart.probe:
        if not restart.first_progress and _completed_tasks(cluster) > done_before:
            restart.first_progress = time.monotonic() - back
        if cluster.statuses().get(probe) in TERMINAL:
            restart.probe = time.monotonic() - back
            restart.first_progress = restart.first_progress or restart.probe
        time.sleep(0.1)
    assert restart.probe, f"a run started after the restart did not finish:\n{cluster.logs()}"
    return restart


def _accepted(cluster: Cluster) -> set[str]:
    return set(cluster.journal.accepted().values())


def _lost_by_broker(cluster: Cluster, at_risk: set[str]) -> set[str]:
    """The runs a broker that keeps nothing across a restart lost: accepted before it was
    back and still not terminal once every later run is and retries and re-sends had time
    to act (none, with the schedule-to-start limit on)."""
    cluster.settle(only=_accepted(cluster) - at_risk)
    deadline = time.monotonic() + LOST_GRACE_SECONDS
    while time.monotonic() < deadline:
        statuses = cluster.statuses()
        lost = {run for run in at_risk if statuses.get(run) not in TERMINAL}
        if not lost:
            break
        time.sleep(0.5)
    if lost:
        names = ", ".join(f"'{run}'" for run in sorted(lost))
        tasks = cluster.sql(
            f"SELECT status, count(*) FROM treadle_tasks WHERE run_id IN ({names})"
            " AND status NOT IN ('completed', 'skipped') GROUP BY status ORDER BY status"
        )
        print(
            f"FAULT-SCENARIO   {len(lost)} of {len(at_risk)} runs in flight lost with the "
            f"broker's data; their unfinished tasks by status: {dict(tasks)}"
        )
    return lost


def _scenario(cluster: Cluster, broker: PrivateBroker, runs: int, *, graceful: bool) -> None:
    _split(cluster)
    with cluster.load(runs):
        time.sleep(LOAD_BEFORE_SECONDS)
        restart = _restart(cluster, broker, graceful)
        cluster.wait_loaded()
    if not broker.keeps_data:
        lost = _lost_by_broker(cluster, restart.at_risk)
        assert not lost, f"{len(lost)} runs in flight at the restart never finished"
        redispatched = cluster.sql(
            "SELECT count(*) FROM treadle_history WHERE type = 'task.redispatched'"
        )[0][0]
        print(f"FAULT-SCENARIO   {redispatched} lost dispatches sent again")
    settled = cluster.settle()
    report = cluster.check()
    report.recovery_seconds = restart.probe
    how = "graceful stop" if graceful else "kill -9"
    report.show(f"{broker.kind} broker {how} + restart under load")
    print(
        f"FAULT-SCENARIO   {broker.kind} {how}: down {restart.down:.1f}s (broker start "
        f"{restart.boot:.1f}s), first task completed {restart.first_progress:.1f}s and a "
        f"fresh run completed {restart.probe:.1f}s after it was back; all settled "
        f"{settled:.1f}s after the fault"
    )
    assert report.runs > 0
    assert restart.probe < RECOVERY_BOUND


def _case(kind: str, mode: str, runs: int, *marks: pytest.MarkDecorator) -> object:
    return pytest.param(kind, mode, runs, id=f"{kind}-{mode}-{runs}", marks=marks)


CASES = [
    _case("nats", "kill", 60),
    _case("nats", "graceful", 60, pytest.mark.soak),
    _case("rabbitmq", "kill", 60),
    _case("rabbitmq", "graceful", 60, pytest.mark.soak),
    _case("kafka", "kill", 60, pytest.mark.soak),
    _case("kafka", "graceful", 60, pytest.mark.soak),
    _case("nats", "kill", 200, pytest.mark.soak),
    _case("rabbitmq", "kill", 200, pytest.mark.soak),
]


@pytest.mark.parametrize(("broker", "mode", "runs"), CASES, indirect=["broker"])
def test_broker_restart_under_load(
    broker: PrivateBroker, broker_cluster: Cluster, mode: str, runs: int
) -> None:
    """The broker dies (kill -9) or stops (gracefully) mid-load and comes back on the same
    port and store: the engine reconnects, and every accepted run completes exactly once."""
    _scenario(broker_cluster, broker, runs, graceful=mode == "graceful")
