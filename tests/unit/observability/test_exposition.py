"""What a registry exports: its roles' families, build info, process metrics, no `_created`
series, and text that `promtool check metrics` accepts."""

from __future__ import annotations

import platform

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.promtool import needs_promtool, promtool_complaints
from treadle.observability import Metrics, TaskOutcome

WORKER_ONLY = {"treadle_worker_inflight_tasks", "treadle_task_duration_seconds"}
ORCHESTRATOR_ONLY = {"treadle_outbox_backlog", "treadle_timer_lag_seconds"}
API_ONLY = {"treadle_http_requests", "treadle_http_request_duration_seconds"}
DECIDING = {"treadle_runs_started", "treadle_decision_duration_seconds"}
EVERY_ROLE = {"treadle_build_info", "treadle_broker_errors", "process_cpu_seconds"}


def families(metrics: Metrics) -> set[str]:
    return {family.name for family in text_string_to_metric_families(metrics.render()[0].decode())}


def exercised(metrics: Metrics) -> Metrics:
    """Move one sample of every kind, so labelled families show their series too."""
    metrics.run_started("orders")
    metrics.run_finished("orders", "completed")
    metrics.task_dispatched("handler", "inventory.reserve")
    metrics.task_finished("handler", "inventory.reserve", TaskOutcome.COMPLETED)
    metrics.observe_task_duration("handler", "inventory.reserve", 0.2)
    metrics.observe_schedule_to_start("handler", 0.01)
    metrics.observe_decision(0.003)
    metrics.set_outbox_backlog(3, 1.5)
    metrics.broker_error("rabbitmq", "publish")
    metrics.http_request("/v1/runs/{run_id}", "GET", 200, 0.004)
    with metrics.track_inflight():
        pass
    return metrics


@pytest.mark.parametrize(
    ("roles", "present", "absent"),
    [
        pytest.param({"worker"}, WORKER_ONLY, ORCHESTRATOR_ONLY | API_ONLY | DECIDING, id="worker"),
        pytest.param(
            {"orchestrator"},
            ORCHESTRATOR_ONLY | DECIDING,
            WORKER_ONLY | API_ONLY,
            id="orchestrator",
        ),
        pytest.param({"api"}, API_ONLY | DECIDING, WORKER_ONLY | ORCHESTRATOR_ONLY, id="api"),
        pytest.param(
            {"api", "orchestrator", "worker"},
            WORKER_ONLY | ORCHESTRATOR_ONLY | API_ONLY | DECIDING,
            set(),
            id="all",
        ),
    ],
)
def test_each_role_exports_only_its_own_families(
    roles: set[str], present: set[str], absent: set[str]
) -> None:
    """A worker has no outbox gauges, an orchestrator no worker gauges, and so on; every
    call site still works whatever the roles (a family not served just goes nowhere)."""
    exported = families(exercised(Metrics(roles=roles)))

    assert present | EVERY_ROLE <= exported
    assert exported & absent == set()


def test_unknown_roles_are_refused() -> None:
    """A typo in a role name is an error, not a registry with no families."""
    with pytest.raises(ValueError, match="unknown roles"):
        Metrics(roles={"wroker"})


def test_no_created_series_are_exported() -> None:
    """Counters and histograms come without their `_created` twins."""
    body = exercised(Metrics()).render()[0].decode()

    assert "_created" not in body
    assert not {name for name in Metrics().metric_names() if name.endswith("_created")}


def test_build_info_names_the_version_python_and_roles() -> None:
    """treadle_build_info is 1, labelled with the package version, Python and the roles."""
    metrics = Metrics(roles={"worker", "api"})
    (family,) = [f for f in metrics.registry.collect() if f.name == "treadle_build_info"]
    (sample,) = family.samples

    assert sample.value == 1
    assert sample.labels["python"] == platform.python_version()
    assert sample.labels["roles"] == "api,worker"
    assert sample.labels["version"] not in ("", "unknown")


def test_process_metrics_are_in_the_engines_own_registry() -> None:
    """The process collector reports on the registry Treadle serves (Linux has /proc)."""
    metrics = Metrics(roles={"worker"})

    assert metrics.registry.get_sample_value("process_resident_memory_bytes")
    assert metrics.registry.get_sample_value("python_info", {**_python_labels()}) == 1


def _python_labels() -> dict[str, str]:
    major, minor, patch = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patch,
        "version": platform.python_version(),
    }


@needs_promtool
@pytest.mark.parametrize("roles", [{"api"}, {"orchestrator"}, {"worker"}], ids=min)
def test_promtool_accepts_each_roles_exposition(roles: set[str]) -> None:
    """`promtool check metrics` finds nothing to lint in any role's output."""
    assert promtool_complaints(exercised(Metrics(roles=roles)).render()[0]) == ""
