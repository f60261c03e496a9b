"""`Telemetry`: one engine's metrics and tracer, and the few blocks each role wraps.

Each helper opens the span, binds the log context and records the metrics of one unit
of work, so a call site is a single `with` and the three signals always agree.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, MutableMapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue
from prometheus_client import CollectorRegistry

from treadle.config import Settings
from treadle.observability import _tracing as t
from treadle.observability._asgi import ASGIApp, TelemetryMiddleware
from treadle.observability._logging import bind_context
from treadle.observability._metrics import Metrics
from treadle.observability._redact import strip_url_passwords
from treadle.observability._tracing import Tracing

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


class Telemetry:
    """The metrics and tracing of one engine, tagged with the roles it serves."""

    def __init__(self, metrics: Metrics, tracing: Tracing, role: str) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.role = role

    @classmethod
    def from_settings(cls, settings: Settings, role: str) -> Telemetry:
        """A fresh registry with the families of `role` (roles joined by commas, as
        `api,worker`), and a tracer configured by the standard `OTEL_*` variables."""
        del settings  # nothing tunable yet beyond OTEL_*; kept so wiring need not change
        tracing = Tracing.from_env("treadle", **{"treadle.role": role})
        return cls(Metrics(CollectorRegistry(), roles=role.split(",")), tracing, role)

    @classmethod
    def for_tests(cls, exporter: SpanExporter | None = None, role: str = "test") -> Telemetry:
        """A fresh registry and a tracer writing synchronously to `exporter` (in memory)."""
        return cls(Metrics(), Tracing.for_tests(exporter or InMemorySpanExporter()), role)

    @classmethod
    def off(cls, role: str = "none") -> Telemetry:
        """Metrics in a fresh registry and no tracing: the default of a part built alone."""
        return cls(Metrics(CollectorRegistry()), Tracing(None, exporter_name="disabled"), role)

    def close(self) -> None:
        """Flush spans; call when the engine closes."""
        self.tracing.shutdown()

    def trace_database(self, engine: AsyncEngine) -> None:
        """Give each statement `engine` runs a client span under the current one (so a
        decision's reads and writes show under its span); nothing when tracing is off."""
        self.tracing.trace_database(engine)

    # --- api ------------------------------------------------------------------------

    def asgi_middleware(self, app: ASGIApp) -> ASGIApp:
        """Litestar `middleware=[telemetry.asgi_middleware]` (it calls this with `app=`)."""
        return TelemetryMiddleware(app, metrics=self.metrics, tracing=self.tracing)

    # --- orchestrator ------------------------------------------------------------------

    @contextmanager
    def decision(
        self,
        run_id: str,
        event_type: str,
        *,
        traceparent: str | None = None,
        workflow: str | None = None,
    ) -> Iterator[Span]:
        """One decision transaction: span (child of the event's traceparent), run_id in
        logs, duration histogram. Stamp `current_traceparent()` on messages made inside."""
        attributes = {t.RUN_ID: run_id, t.WORKFLOW_NAME: workflow, "treadle.event": event_type}
        with (
            self.tracing.span(
                f"decide {event_type}", traceparent=traceparent, attributes=attributes
            ) as span,
            bind_context(run_id=run_id, workflow=workflow),
            self.metrics.time_decision(),
        ):
            yield span

    @contextmanager
    def outbox_publish(self, channel: str, traceparents: Sequence[str | None]) -> Iterator[None]:
        """Publishing a batch: one producer span per message, each in its own run's trace."""
        with ExitStack() as stack:
            for traceparent in traceparents:
                stack.enter_context(
                    self.tracing.span(
                        f"publish {channel}",
                        traceparent=traceparent,
                        kind=SpanKind.PRODUCER,
                        attributes={"messaging.destination.name": channel},
                    )
                )
            yield

    # --- worker ----------------------------------------------------------------------

    @contextmanager
    def task_execution(
        self,
        *,
        run_id: str,
        task_id: str,
        attempt: int,
        task_type: str,
        handler: str | None,
        workflow: str | None = None,
        traceparent: str | None = None,
        dispatched_at: datetime | None = None,
    ) -> Iterator[Span]:
        """One attempt in a worker: consumer span, log context, in-flight gauge, duration
        and (given the dispatch time) schedule-to-start latency."""
        if dispatched_at is not None:
            waited = time.time() - dispatched_at.timestamp()
            self.metrics.observe_schedule_to_start(task_type, waited)
        attributes: dict[str, AttributeValue | None] = {
            t.RUN_ID: run_id,
            t.TASK_ID: task_id,
            t.TASK_ATTEMPT: attempt,
            t.WORKFLOW_NAME: workflow,
            "treadle.task_type": task_type,
            "treadle.handler": handler,
        }
        started = time.perf_counter()
        try:
            with (
                self.tracing.span(
                    f"task {handler or task_type}",
                    traceparent=traceparent,
                    kind=SpanKind.CONSUMER,
                    attributes=attributes,
                ) as span,
                bind_context(role="worker", run_id=run_id, task_id=task_id, attempt=attempt),
                self.metrics.track_inflight(),
            ):
                yield span
        finally:
            self.metrics.observe_task_duration(task_type, handler, time.perf_counter() - started)

    @contextmanager
    def http_call(self, method: str, url: str, headers: MutableMapping[str, str]) -> Iterator[Span]:
        """An `http` task's request: client span, and its traceparent put in `headers`.

        Set the answer with `record_http_status(span, response.status_code)`.
        """
        parts = urlsplit(url)
        attributes: dict[str, AttributeValue | None] = {
            "http.request.method": method.upper(),
            "url.full": strip_url_passwords(url),
            "server.address": parts.hostname,
            "server.port": parts.port,
        }
        with self.tracing.span(
            f"HTTP {method.upper()}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            t.inject_headers(headers)
            yield span


def record_http_status(span: Span, status_code: int) -> None:
    """Note an HTTP answer on a client span; 4xx and 5xx mark it as an error."""
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 400:
        span.set_status(StatusCode.ERROR)
