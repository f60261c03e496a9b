"""Metrics: each method moves its own sample, in its own registry, with bounded labels."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from treadle.observability import Metrics, TaskOutcome


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_runs_started_and_finished_count_by_workflow_and_status() -> None:
    """run_started/run_finished count per workflow, and per status when finished."""
    metrics = Metrics()
    metrics.run_started("orders")
    metrics.run_started("orders")
    metrics.run_finished("orders", "completed")

    assert value(metrics, "treadle_runs_started_total", workflow="orders") == 2
    assert value(metrics, "treadle_runs_finished_total", workflow="orders", status="completed") == 1


def test_task_counters_use_type_handler_and_outcome() -> None:
    """task_dispatched and task_finished count by task type, handler and outcome."""
    metrics = Metrics()
    metrics.task_dispatched("handler", "inventory.reserve")
    metrics.task_dispatched("http", None)
    metrics.task_finished("handler", "inventory.reserve", TaskOutcome.RETRIED)
    metrics.task_finished("handler", "inventory.reserve", "completed")

    assert (
        value(
            metrics,
            "treadle_tasks_dispatched_total",
            task_type="handler",
            handler="inventory.reserve",
        )
        == 1
    )
    assert value(metrics, "treadle_tasks_dispatched_total", task_type="http", handler="none") == 1
    for outcome in ("retried", "completed"):
        labels = {"task_type": "handler", "handler": "inventory.reserve", "outcome": outcome}
        assert value(metrics, "treadle_tasks_finished_total", **labels) == 1


def test_an_unknown_outcome_is_folded_into_other() -> None:
    """A typo in an outcome cannot create a new series."""
    metrics = Metrics()
    metrics.task_finished("handler", "h", "exploded")

    labels = {"task_type": "handler", "handler": "h", "outcome": "other"}
    assert value(metrics, "treadle_tasks_finished_total", **labels) == 1


def test_histograms_observe_durations_and_latency() -> None:
    """Task duration, schedule-to-start and decision duration land in their histograms."""
    metrics = Metrics()
    metrics.observe_task_duration("handler", "h", 0.2)
    metrics.observe_schedule_to_start("handler", -1.0)  # clock skew reads as 0
    metrics.observe_decision(0.003)
    with metrics.time_decision():
        pass

    assert (
        value(metrics, "treadle_task_duration_seconds_count", task_type="handler", handler="h") == 1
    )
    assert (
        value(
            metrics,
            "treadle_task_duration_seconds_bucket",
            task_type="handler",
            handler="h",
            le="0.25",
        )
        == 1
    )
    assert value(metrics, "treadle_task_schedule_to_start_seconds_sum", task_type="handler") == 0
    assert value(metrics, "treadle_decision_duration_seconds_count") == 2


def test_store_gauges_are_set() -> None:
    """Outbox backlog, its oldest age, overdue timers and timer lag are plain gauges."""
    metrics = Metrics()
    metrics.set_outbox_backlog(7, 12.5)
    metrics.set_timers_overdue(3)
    metrics.set_timer_lag(-4.0)

    assert value(metrics, "treadle_outbox_backlog") == 7
    assert value(metrics, "treadle_outbox_oldest_age_seconds") == 12.5
    assert value(metrics, "treadle_timers_overdue") == 3
    assert value(metrics, "treadle_timer_lag_seconds") == 0


def test_broker_errors_count_by_transport_and_operation() -> None:
    """broker_error counts per transport and operation."""
    metrics = Metrics()
    metrics.broker_error("rabbitmq", "publish")

    labels = {"transport": "rabbitmq", "operation": "publish"}
    assert value(metrics, "treadle_broker_errors_total", **labels) == 1


def test_inflight_goes_up_inside_the_block_and_down_after() -> None:
    """track_inflight counts the block, also when it raises; the limit is a gauge."""
    metrics = Metrics()
    metrics.set_worker_concurrency(32)
    with metrics.track_inflight():
        assert value(metrics, "treadle_worker_inflight_tasks") == 1
    with pytest.raises(RuntimeError), metrics.track_inflight():
        raise RuntimeError

    assert value(metrics, "treadle_worker_inflight_tasks") == 0
    assert value(metrics, "treadle_worker_concurrency_limit") == 32


def test_sync_thread_gauges_read_what_the_worker_last_set() -> None:
    """Held and abandoned sync handler threads, and their limit, are plain gauges."""
    metrics = Metrics()
    metrics.set_sync_threads_limit(64)
    metrics.set_sync_threads(5, 3)
    metrics.set_sync_threads(4, 2)

    assert value(metrics, "treadle_worker_sync_threads_held") == 4
    assert value(metrics, "treadle_worker_sync_threads_abandoned") == 2
    assert value(metrics, "treadle_worker_sync_threads_limit") == 64


def test_http_requests_count_and_time_by_route_template() -> None:
    """http_request counts by route, method and status, and times by route and method."""
    metrics = Metrics()
    metrics.http_request("/v1/runs/{run_id}", "get", 404, 0.01)

    labels = {"route": "/v1/runs/{run_id}", "method": "GET"}
    assert value(metrics, "treadle_http_requests_total", **labels, status="404") == 1
    assert value(metrics, "treadle_http_request_duration_seconds_count", **labels) == 1


def test_two_metrics_objects_do_not_share_samples() -> None:
    """Each Metrics has its own registry, so engines in one process do not collide."""
    first, second = Metrics(), Metrics()
    first.run_started("w")

    assert value(first, "treadle_runs_started_total", workflow="w") == 1
    assert value(second, "treadle_runs_started_total", workflow="w") is None


def test_a_given_registry_is_used() -> None:
    """Metrics registers into the registry it is handed."""
    registry = CollectorRegistry()
    Metrics(registry).run_started("w")

    assert registry.get_sample_value("treadle_runs_started_total", {"workflow": "w"}) == 1


def test_handler_label_is_capped() -> None:
    """Past the cap, new handler names are counted under `other`; known ones keep theirs."""
    metrics = Metrics(label_cap=2)
    for name in ("a", "b", "c", "d", "a"):
        metrics.task_dispatched("handler", name)

    def count(handler: str) -> float | None:
        return value(
            metrics, "treadle_tasks_dispatched_total", task_type="handler", handler=handler
        )

    assert (count("a"), count("b"), count("other")) == (2, 1, 2)
    assert count("c") is None


def test_render_is_the_prometheus_text_format() -> None:
    """render() returns the exposition text of this registry and its content type."""
    metrics = Metrics()
    metrics.run_started("w")
    body, content_type = metrics.render()

    assert b'treadle_runs_started_total{workflow="w"} 1.0' in body
    assert content_type.startswith("text/plain; version=0.0.4")


def test_metric_names_cover_unused_labelled_metrics() -> None:
    """metric_names lists series of labelled metrics before any sample exists."""
    names = Metrics().metric_names()

    assert {"treadle_runs_started_total", "treadle_task_duration_seconds_bucket"} <= names
    assert "treadle_worker_inflight_tasks" in names
