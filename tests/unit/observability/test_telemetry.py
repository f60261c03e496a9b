"""The Telemetry bundle: the blocks each role wraps, the HTTP middleware and the gauges loop."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from litestar import Litestar, get
from litestar.params import FromPath
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.unit.observability.conftest import LogCapture, OtelEnv
from treadle.config import Settings
from treadle.observability import (
    Telemetry,
    collect_store_gauges_once,
    current_traceparent,
    get_logger,
    metrics_app,
    record_http_status,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def telemetry(spans: InMemorySpanExporter) -> Telemetry:
    """A Telemetry recording spans in memory."""
    return Telemetry.for_tests(spans, role="worker")


def test_from_settings_builds_fresh_metrics_and_tracing(otel_env: OtelEnv) -> None:
    """Two engines built from settings have separate registries and a tracer each."""
    first = Telemetry.from_settings(Settings(), "api,worker")
    second = Telemetry.from_settings(Settings(), "api,worker")
    first.metrics.run_started("w")

    assert (
        second.metrics.registry.get_sample_value("treadle_runs_started_total", {"workflow": "w"})
        is None
    )
    assert first.metrics.roles == {"api", "worker"}
    assert first.tracing.provider is not None
    assert first.tracing.provider.resource.attributes["treadle.role"] == "api,worker"
    first.close()
    second.close()


def test_task_execution_records_span_logs_and_metrics(
    telemetry: Telemetry, spans: InMemorySpanExporter, logs: LogCapture
) -> None:
    """One attempt: a consumer span in the dispatch's trace, bound log context, metrics."""
    with telemetry.task_execution(
        run_id="r1",
        task_id="charge",
        attempt=2,
        task_type="handler",
        handler="pay.charge",
        workflow="orders",
        traceparent=TRACEPARENT,
        dispatched_at=datetime.now(UTC) - timedelta(seconds=1),
    ):
        inflight = telemetry.metrics.registry.get_sample_value("treadle_worker_inflight_tasks")
        get_logger("handler").info("charging")

    [span] = spans.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.attributes is not None
    assert (span.attributes["run.id"], span.attributes["task.attempt"]) == ("r1", 2)
    [line] = logs.lines()
    assert (line["run_id"], line["task_id"], line["attempt"], line["role"]) == (
        "r1",
        "charge",
        2,
        "worker",
    )
    assert line["trace_id"] == TRACE_ID
    registry = telemetry.metrics.registry
    assert inflight == 1
    assert registry.get_sample_value("treadle_worker_inflight_tasks") == 0
    labels = {"task_type": "handler", "handler": "pay.charge"}
    assert registry.get_sample_value("treadle_task_duration_seconds_count", labels) == 1
    assert registry.get_sample_value(
        "treadle_task_schedule_to_start_seconds_sum", {"task_type": "handler"}
    ) == pytest.approx(1.0, abs=0.5)


def test_retries_are_separate_spans_in_one_trace(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Two attempts of a task are two spans sharing the run's trace id."""
    for attempt in (1, 2):
        with telemetry.task_execution(
            run_id="r1",
            task_id="t",
            attempt=attempt,
            task_type="handler",
            handler="h",
            traceparent=TRACEPARENT,
        ):
            pass

    first, second = spans.get_finished_spans()
    assert first.context.trace_id == second.context.trace_id
    assert first.context.span_id != second.context.span_id


def test_a_failing_attempt_is_still_timed_and_released(telemetry: Telemetry) -> None:
    """An exception in the block still records the duration and frees the in-flight slot."""
    with (
        pytest.raises(RuntimeError),
        telemetry.task_execution(
            run_id="r", task_id="t", attempt=1, task_type="handler", handler="h"
        ),
    ):
        raise RuntimeError

    registry = telemetry.metrics.registry
    assert registry.get_sample_value("treadle_worker_inflight_tasks") == 0
    labels = {"task_type": "handler", "handler": "h"}
    assert registry.get_sample_value("treadle_task_duration_seconds_count", labels) == 1


def test_decision_is_a_span_whose_traceparent_is_stamped_on_messages(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """A decision joins the event's trace; messages made inside carry the decision span."""
    with telemetry.decision("r1", "task.completed", traceparent=TRACEPARENT, workflow="orders"):
        stamped = current_traceparent()

    [span] = spans.get_finished_spans()
    assert span.name == "decide task.completed"
    assert stamped is not None
    assert stamped.split("-")[1:3] == [TRACE_ID, f"{span.context.span_id:016x}"]
    assert (
        telemetry.metrics.registry.get_sample_value("treadle_decision_duration_seconds_count") == 1
    )


def test_outbox_publish_makes_one_span_per_message_in_its_own_trace(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """A batch for two runs yields a producer span in each run's trace (and one root)."""
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    with telemetry.outbox_publish("tasks.default", [TRACEPARENT, other, None]):
        pass

    finished = spans.get_finished_spans()
    trace_ids = {f"{span.context.trace_id:032x}" for span in finished}
    assert len(finished) == 3
    assert {TRACE_ID, "11111111111111111111111111111111"} <= trace_ids
    assert all(span.kind is SpanKind.PRODUCER for span in finished)


def test_http_call_injects_trace_context_and_hides_url_passwords(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """An http task's call is a client span; its traceparent goes into the request headers."""
    headers: dict[str, str] = {}
    with telemetry.http_call("post", "https://u:pw@pay.example:8443/charge", headers) as span:
        record_http_status(span, 503)

    [finished] = spans.get_finished_spans()
    assert headers["traceparent"].split("-")[2] == f"{finished.context.span_id:016x}"
    assert finished.kind is SpanKind.CLIENT
    assert finished.attributes is not None
    assert finished.attributes["url.full"] == "https://u:***@pay.example:8443/charge"
    assert finished.attributes["http.response.status_code"] == 503
    assert not finished.status.is_ok


@get("/v1/runs/{run_id:str}")
async def read_run(run_id: FromPath[str]) -> dict[str, str | None]:
    return {"id": run_id, "traceparent": current_traceparent()}


@pytest.mark.anyio
async def test_litestar_middleware_records_route_templates_and_joins_the_callers_trace(
    telemetry: Telemetry, spans: InMemorySpanExporter
) -> None:
    """Requests are counted by route template and traced as children of their traceparent."""
    app = Litestar([read_run], middleware=[telemetry.asgi_middleware])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        answer = await client.get("/v1/runs/abc", headers={"traceparent": TRACEPARENT})
        await client.get("/v1/runs/def")

    assert answer.status_code == 200
    assert answer.json()["traceparent"].split("-")[1] == TRACE_ID
    labels = {"route": "/v1/runs/{run_id}", "method": "GET", "status": "200"}
    assert telemetry.metrics.registry.get_sample_value("treadle_http_requests_total", labels) == 2
    first = spans.get_finished_spans()[0]
    assert first.name == "GET /v1/runs/{run_id}"
    assert first.kind is SpanKind.SERVER
    assert f"{first.context.trace_id:032x}" == TRACE_ID


@pytest.mark.anyio
async def test_metrics_app_serves_the_registry(telemetry: Telemetry) -> None:
    """The standalone /metrics app answers with this engine's metrics, 404 elsewhere."""
    telemetry.metrics.run_started("w")
    transport = httpx.ASGITransport(app=metrics_app(telemetry.metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        scraped = await client.get("/metrics")
        missing = await client.get("/nope")

    assert scraped.status_code == 200
    assert 'treadle_runs_started_total{workflow="w"} 1.0' in scraped.text
    assert scraped.headers["content-type"].startswith("text/plain")
    assert missing.status_code == 404


class FakeStore:
    """The reads the gauges loop makes, with fixed answers."""

    def __init__(
        self,
        backlog: int,
        oldest: datetime | None,
        next_timer: datetime | None,
        overdue: int = 0,
    ) -> None:
        self.backlog, self.oldest, self.next_timer, self.overdue = (
            backlog,
            oldest,
            next_timer,
            overdue,
        )

    async def outbox_backlog(self) -> tuple[int, datetime | None]:
        return self.backlog, self.oldest

    async def next_timer_at(self) -> datetime | None:
        return self.next_timer

    async def count_overdue_timers(self, now: datetime, cap: int) -> int:
        return min(self.overdue, cap)


@pytest.mark.anyio
async def test_store_gauges_read_backlog_and_timer_lag(telemetry: Telemetry) -> None:
    """Backlog, the oldest row's age and the earliest timer's lag come from the store."""
    store = FakeStore(4, NOW - timedelta(seconds=30), NOW - timedelta(seconds=5), overdue=7)
    await collect_store_gauges_once(telemetry.metrics, store, lambda: NOW)

    registry = telemetry.metrics.registry
    assert registry.get_sample_value("treadle_outbox_backlog") == 4
    assert registry.get_sample_value("treadle_outbox_oldest_age_seconds") == 30
    assert registry.get_sample_value("treadle_timer_lag_seconds") == 5
    assert registry.get_sample_value("treadle_timers_overdue") == 7

    await collect_store_gauges_once(telemetry.metrics, FakeStore(0, None, None), lambda: NOW)
    assert registry.get_sample_value("treadle_outbox_oldest_age_seconds") == 0
    assert registry.get_sample_value("treadle_timer_lag_seconds") == 0
    assert registry.get_sample_value("treadle_timers_overdue") == 0
