"""Traces: a per-engine TracerProvider and W3C trace context carried in `traceparent`.

The provider is an object, never installed as OpenTelemetry's global one, so a test can
build many engines and read each one's spans. The *context* (which span is current) is
OpenTelemetry's contextvar, shared by all providers; that is what lets a log line pick
up the trace id, and what `current_traceparent` reads.

Configuration is the SDK's own handling of the standard variables, so whatever
opentelemetry-sdk documents works here: `OTEL_TRACES_EXPORTER` picks exporters by their
entry-point names (`otlp`, `console`, any installed plugin); `OTEL_EXPORTER_OTLP_PROTOCOL`
(or `..._TRACES_PROTOCOL`) picks `grpc` (the `treadle[otlp-grpc]` extra) or
`http/protobuf`; the exporters read their `OTEL_EXPORTER_OTLP_*` endpoint, headers,
timeout, compression and certificates, the batch processor its `OTEL_BSP_*`, the resource
`OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`. Treadle adds three things:
- `OTEL_SDK_DISABLED=true`: no SDK at all; `span()` creates nothing but keeps the
  incoming context current, so a `traceparent` passes through unchanged.
- Nothing chosen: spans are made (ids, sampling decision) and dropped when they end, so
  logs still carry trace ids and outgoing messages a traceparent with its sampled flag;
  but an OTLP endpoint set without an exporter exports to it (`otlp` is implied).
- `otlp` with no protocol set speaks `http/protobuf`, the specification's default (the
  Python SDK alone would pick grpc); console spans go to stderr (stdout is for logs).
A bad value (an unknown exporter, protocol or sampler) fails at start-up naming it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import NoOpMeter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from treadle.config import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

TRACER_NAME = "treadle"
_PROPAGATOR = TraceContextTextMapPropagator()

# Span attribute names shared by every call site (span attributes may carry run ids;
# metric labels may not).
RUN_ID = "run.id"
TASK_ID = "task.id"
TASK_ATTEMPT = "task.attempt"
WORKFLOW_NAME = "workflow.name"


class Tracing:
    """A tracer with its own provider; `span()` is how the rest of Treadle uses it."""

    def __init__(self, provider: TracerProvider | None, *, exporter_name: str = "none") -> None:
        self.provider = provider
        self.exporter_name = exporter_name
        source: trace.TracerProvider = provider or trace.NoOpTracerProvider()
        self._tracer = source.get_tracer(TRACER_NAME)

    @classmethod
    def from_env(cls, service_name: str, **resource: str) -> Tracing:
        """Build from the standard `OTEL_*` variables (see the module docstring)."""
        env = os.environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(None, exporter_name="disabled")
        provider = TracerProvider(
            sampler=sampler_from_env(env),
            resource=_resource(service_name, resource),
            shutdown_on_exit=False,  # `shutdown()` flushes; atexit hooks would pile up in tests
        )
        names, exporters = exporters_from_env()
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, exporter_name=",".join(names) or "none")

    @classmethod
    def for_tests(cls, exporter: SpanExporter, service_name: str = "treadle-test") -> Tracing:
        """Always sampling, exporting synchronously to `exporter` (an InMemorySpanExporter)."""
        provider = TracerProvider(
            sampler=ALWAYS_ON,
            resource=Resource.create({"service.name": service_name}),
            shutdown_on_exit=False,
        )
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        return cls(provider, exporter_name="test")

    @contextmanager
    def span(
        self,
        name: str,
        *,
        traceparent: str | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Mapping[str, AttributeValue | None] | None = None,
    ) -> Iterator[Span]:
        """Run the block in a new current span.

        Its parent is the span in `traceparent` (a W3C header value taken from a message
        or a request) when given and valid, else the current span. An exception leaving
        the block is recorded on the span and marks it as an error.
        """
        parent = extract_context(traceparent) if traceparent else None
        clean = {k: v for k, v in (attributes or {}).items() if v is not None}
        with self._tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=clean
        ) as current:
            yield current

    def current_traceparent(self) -> str | None:
        """The current span as a W3C `traceparent` value, to stamp on outgoing messages."""
        return current_traceparent()

    def inject_headers(self, headers: MutableMapping[str, str]) -> None:
        """Add `traceparent` (and `tracestate`) for an outgoing HTTP call."""
        inject_headers(headers)

    @property
    def exports(self) -> bool:
        """Whether finished spans go anywhere (an exporter, or a test's memory)."""
        return self.provider is not None and self.exporter_name not in ("none", "disabled")

    def trace_database(self, engine: AsyncEngine) -> None:
        """A client span for each statement `engine` runs, as a child of the current span.

        Only when spans are exported: nobody would see them otherwise, and a decision runs
        a dozen statements. The instrumentation's `EngineTracer` listens on this one
        engine; its `SQLAlchemyInstrumentor` would patch `create_engine` process-wide with
        one provider, and each engine here has its own.
        """
        if self.provider is None or not self.exports:
            return
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer  # noqa: PLC0415

        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        # Connection-pool usage is a metric; Treadle's metrics are Prometheus', so the
        # instrumentation gets a meter that records nothing.
        usage = NoOpMeter("treadle").create_up_down_counter("db.client.connections.usage")
        EngineTracer(tracer, engine.sync_engine, usage)  # type: ignore[no-untyped-call]

    def shutdown(self) -> None:
        """Flush pending spans and stop the exporter; call once when the engine closes."""
        if self.provider is not None:
            self.provider.shutdown()


# --- propagation (context is process-wide, so these need no Tracing) ----------------------


def extract_context(traceparent: str) -> otel_context.Context:
    """A context whose current span is the remote one in `traceparent` (empty if invalid)."""
    return _PROPAGATOR.extract({"traceparent": traceparent})


def current_traceparent() -> str | None:
    """The current span as a W3C `traceparent` value; None outside any valid span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def inject_headers(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to outgoing HTTP `headers`, in place."""
    _PROPAGATOR.inject(headers)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the current span, or None outside any span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


# --- configuration from the environment -------------------------------------------------


def sampler_from_env(env: Mapping[str, str]) -> Sampler:
    """`OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, as the spec names them."""
    name = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    root: Sampler
    if name in ("always_on", "always_off", "parentbased_always_on", "parentbased_always_off"):
        root = ALWAYS_ON if name.endswith("always_on") else ALWAYS_OFF
    elif name in ("traceidratio", "parentbased_traceidratio"):
        root = TraceIdRatioBased(_ratio(env.get("OTEL_TRACES_SAMPLER_ARG", "1.0")))
    else:
        raise ConfigError("OTEL_TRACES_SAMPLER", f"unsupported sampler {name!r}")
    return ParentBased(root) if name.startswith("parentbased_") else root


def _ratio(text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        raise ConfigError("OTEL_TRACES_SAMPLER_ARG", f"not a number: {text!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError("OTEL_TRACES_SAMPLER_ARG", f"must be within 0..1, got {ratio}")
    return ratio


def exporters_from_env() -> tuple[list[str], list[SpanExporter]]:
    """The span exporters `OTEL_TRACES_EXPORTER` names, as the SDK resolves and makes them.

    Returns their entry-point names (`otlp_proto_http`, `console`...) and the exporters,
    each built with no arguments so that it reads its own `OTEL_EXPORTER_*` variables.
    """
    # The SDK's own reading of OTEL_TRACES_EXPORTER and OTEL_EXPORTER_OTLP_PROTOCOL, the
    # code `opentelemetry-instrument` runs, without its installing of global providers.
    from opentelemetry.sdk._configuration import _import_exporters  # noqa: PLC0415

    chosen = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    chosen = [n for n in chosen if n]
    if not chosen:
        chosen = ["otlp"] if _otlp_endpoint_set() else []
    if chosen == ["none"]:
        return [], []
    try:
        names = [_entry_point(name) for name in chosen]
        classes, _, _ = _import_exporters(names, [], [])
    except RuntimeError as exc:  # how the SDK reports an unknown name or protocol
        key = "OTEL_EXPORTER_OTLP_PROTOCOL" if "protocol" in str(exc) else "OTEL_TRACES_EXPORTER"
        raise ConfigError(key, f"{exc}{_GRPC_HINT if 'grpc' in str(exc) else ''}") from None
    return list(classes), [_make_exporter(cls) for cls in classes.values()]


_GRPC_HINT = " (OTLP over grpc needs the extra: pip install 'treadle[otlp-grpc]')"


def _entry_point(name: str) -> str:
    from opentelemetry.sdk._configuration import _get_exporter_entry_point  # noqa: PLC0415

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL"
    )
    if name == "otlp" and not (protocol or "").strip():
        return "otlp_proto_http"  # the specification's default protocol
    return str(_get_exporter_entry_point(name, "traces"))


def _make_exporter(cls: type[SpanExporter]) -> SpanExporter:
    if issubclass(cls, ConsoleSpanExporter):
        return cls(out=sys.stderr)
    return cls()


def _otlp_endpoint_set() -> bool:
    return any(
        os.environ.get(key, "").strip()
        for key in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _resource(service_name: str, attributes: Mapping[str, str]) -> Resource:
    """`attributes` over `OTEL_RESOURCE_ATTRIBUTES`; `service_name` unless the environment
    names the service (`OTEL_SERVICE_NAME`, or `service.name=` in the attributes)."""
    resource = Resource.create(dict(attributes))
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service_name}))
    return resource
