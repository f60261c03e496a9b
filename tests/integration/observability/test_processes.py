"""One run across api, orchestrator and worker processes reads as one trace, and every
log line it leaves is JSON that names the run."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.observability.conftest import ROLES, Cluster, Span
from tests.promtool import needs_promtool, promtool_complaints
from treadle.observability import ACCESS_LOGGER

SERVER, CLIENT, CONSUMER = 2, 3, 5  # OTLP SpanKind values


def _run_spans(cluster: Cluster) -> list[Span]:
    run_id = cluster.run["id"]
    tagged = [s for s in cluster.receiver.spans if s.attributes.get("run.id") == run_id]
    assert tagged, f"no span names run {run_id}; got {len(cluster.receiver.spans)} spans"
    trace_ids = {s.trace_id for s in tagged}
    assert len(trace_ids) == 1, f"the run spans {len(trace_ids)} traces"
    return [s for s in cluster.receiver.spans if s.trace_id in trace_ids]


def test_the_run_completes_and_every_process_exits_cleanly(cluster: Cluster) -> None:
    """The retried task succeeds on its second attempt and SIGTERM stops all three roles."""
    assert cluster.run["status"] == "completed", cluster.run
    first = next(t for t in cluster.run["tasks"] if t["task_id"] == "first")
    assert first["attempt"] == 2
    assert cluster.exit_codes == dict.fromkeys(ROLES, 0)


def test_every_role_serves_readiness_with_each_check(cluster: Cluster) -> None:
    """/readyz on each process (the ops-only app without the api role) names every check."""
    checks = {"database": "ok", "migrations": "ok", "transport": "ok", "roles": "ok"}
    for role in ROLES:
        # A worker also says whether its sync handlers can still get a thread.
        expected = {**checks, "sync_threads": "ok"} if role == "worker" else checks
        assert cluster.readiness[role] == {"status": "ok", "checks": expected}, role


def test_one_trace_covers_the_run_on_every_process(cluster: Cluster) -> None:
    """All spans naming the run share one trace id, exported by each of the three roles."""
    spans = _run_spans(cluster)
    roles = {s.resource.get("treadle.role") for s in spans}
    assert roles == set(ROLES)
    assert {s.resource.get("service.name") for s in spans} == {"treadle"}


def test_parent_links_follow_the_run(cluster: Cluster) -> None:
    """The request span parents the first decision; each attempt descends from a decision."""
    spans = _run_spans(cluster)
    by_id = {s.span_id: s for s in spans}
    request = next(s for s in spans if s.kind == SERVER and s.name == "POST /v1/runs")
    assert request.parent_id == ""  # the trace begins at the API request
    first_decision = next(s for s in spans if s.name == "decide run.started")
    assert first_decision.parent_id == request.span_id
    assert first_decision.resource["treadle.role"] == "api"
    attempts = [s for s in spans if s.kind == CONSUMER and s.name.startswith("task ")]
    assert attempts
    for attempt in attempts:
        parent = by_id[attempt.parent_id]
        assert parent.name.startswith("decide "), parent.name
        assert attempt.resource["treadle.role"] == "worker"
    first_attempt = _attempt(attempts, "first", 1)
    assert first_attempt.parent_id == first_decision.span_id
    retry_decision = by_id[_attempt(attempts, "first", 2).parent_id]
    assert retry_decision.name == "decide timer.fired"
    assert retry_decision.resource["treadle.role"] == "orchestrator"


def test_retries_are_separate_spans(cluster: Cluster) -> None:
    """Each attempt of the retried task is its own span; the first records the failure."""
    spans = _run_spans(cluster)
    attempts = [s for s in spans if s.kind == CONSUMER and s.attributes.get("task.id") == "first"]
    assert sorted(s.attributes["task.attempt"] for s in attempts) == [1, 2]
    assert len({s.span_id for s in attempts}) == 2
    failed = _attempt(attempts, "first", 1)
    decisions_after = [s for s in spans if s.parent_id == failed.span_id]
    assert "decide task.failed" in {s.name for s in decisions_after}


def _attempt(spans: list[Span], task_id: str, number: int) -> Span:
    return next(
        s
        for s in spans
        if s.attributes.get("task.id") == task_id and s.attributes.get("task.attempt") == number
    )


def test_every_log_line_is_json_and_names_the_run_it_concerns(cluster: Cluster) -> None:
    """Each process writes only JSON lines; each line of the run's work carries its run_id."""
    run_id = cluster.run["id"]
    trace_id = _run_spans(cluster)[0].trace_id
    concerning: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for role in ROLES:
        for line in cluster.log_lines(role):
            record = json.loads(line)  # fails the test on any line that is not JSON
            assert {"time", "level", "logger", "message", "role"} <= record.keys(), record
            assert record["role"] == role
            if _concerns(record, run_id, trace_id):
                assert record.get("run_id") == run_id, record
                concerning[role].append(record)
    messages = {role: {r["message"] for r in records} for role, records in concerning.items()}
    assert "run started" in messages["api"]
    assert "run finished" in messages["orchestrator"]
    assert {"attempt failed", "attempt completed"} <= messages["worker"]
    for record in concerning["worker"]:
        assert {"task_id", "attempt", "trace_id", "span_id"} <= record.keys()


def _concerns(record: dict[str, Any], run_id: str, trace_id: str) -> bool:
    """A line of the run's decisions or attempts: ours, and in its trace or naming it.

    HTTP access lines (`treadle.access`) are left out: they name the path, and the run's
    id is in a path only after the request that created it.
    """
    logger = str(record.get("logger", ""))
    if not logger.startswith("treadle.") or logger == ACCESS_LOGGER:
        return False
    return record.get("trace_id") == trace_id or run_id in json.dumps(record)


OWN_FAMILIES = {
    "api": {"treadle_http_requests"},
    "orchestrator": {"treadle_outbox_backlog", "treadle_timers_overdue"},
    "worker": {"treadle_worker_inflight_tasks", "treadle_task_duration_seconds"},
}
DECISION_FAMILIES = {"treadle_runs_started", "treadle_runs_finished", "treadle_tasks_dispatched"}
"""Families of the processes that decide: the api (starts, control) and the orchestrator."""


@pytest.mark.parametrize("role", ROLES)
def test_each_role_exports_its_own_families_and_the_common_ones(
    cluster: Cluster, role: str
) -> None:
    """A role's /metrics has its families, build info and process metrics, and none of
    another role's own families (no zero outbox gauges on a worker)."""
    exported = {family.name for family in text_string_to_metric_families(cluster.metrics[role])}
    others = set().union(*(OWN_FAMILIES[r] for r in ROLES if r != role))
    if role == "worker":
        own, others = OWN_FAMILIES[role], others | DECISION_FAMILIES
    else:
        own = OWN_FAMILIES[role] | DECISION_FAMILIES

    assert own <= exported
    assert {
        "treadle_build_info",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
    } <= exported
    assert exported & others == set()
    assert "_created" not in cluster.metrics[role]


@needs_promtool
@pytest.mark.parametrize("role", ROLES)
def test_promtool_accepts_each_roles_metrics(cluster: Cluster, role: str) -> None:
    """`promtool check metrics` finds nothing to lint in what each process serves."""
    assert promtool_complaints(cluster.metrics[role]) == ""


def test_decisions_have_database_spans_under_them(cluster: Cluster) -> None:
    """Each process that decides shows the decision's statements as client spans under it."""
    spans = _run_spans(cluster)
    by_id = {s.span_id: s for s in spans}
    database = [s for s in spans if s.kind == CLIENT and by_id.get(s.parent_id)]
    decided_by = {
        by_id[s.parent_id].resource["treadle.role"]
        for s in database
        if by_id[s.parent_id].name.startswith("decide ")
    }
    assert decided_by == {"api", "orchestrator"}
    assert {s.attributes.get("db.system") for s in database} >= {"postgresql"}
