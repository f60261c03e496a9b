"""Traces: a per-engine TracerProvider and W3C trace context carried in `traceparent`.

The provider is an object, never installed as OpenTelemetry's global one, so a test can
build many engines and read each one's spans. The *context* (which span is current) is
OpenTelemetry's contextvar, shared by all providers; that is what lets a log line pick
up the trace id, and what `current_traceparent` reads.

Exporter choice (standard variables):
- `OTEL_SDK_DISABLED=true`: no SDK at all; `span()` creates nothing but keeps the
  incoming context current, so a `traceparent` passes through unchanged.
- `OTEL_TRACES_EXPORTER=none`, or nothing set: the SDK makes spans (ids, sampling
  decision) and drops them when they end. Logs still carry trace ids, and outgoing
  messages carry a traceparent with the sampled flag intact, so a downstream process
  that does export keeps the whole trace.
- `OTEL_TRACES_EXPORTER=console`: spans printed to stderr (stdout is for log lines).
- `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` set, or
  `OTEL_TRACES_EXPORTER=otlp`: OTLP over HTTP, batched.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from opentelemetry import context as otel_context
from opentelemetry import trace
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
    def from_env(
        cls, service_name: str, environ: Mapping[str, str] | None = None, **resource: str
    ) -> Tracing:
        """Build from the standard `OTEL_*` variables (see the module docstring)."""
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(None, exporter_name="disabled")
        attributes = {"service.name": env.get("OTEL_SERVICE_NAME") or service_name, **resource}
        provider = TracerProvider(
            sampler=sampler_from_env(env),
            resource=Resource.create(attributes),
            shutdown_on_exit=False,  # `shutdown()` flushes; atexit hooks would pile up in tests
        )
        name, exporter = _exporter_from_env(env)
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, exporter_name=name)

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


def _exporter_from_env(env: Mapping[str, str]) -> tuple[str, SpanExporter | None]:
    chosen = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    endpoint = _otlp_traces_endpoint(env)
    if chosen == "none" or (not chosen and endpoint is None):
        return "none", None
    if chosen == "console":
        return "console", ConsoleSpanExporter(out=sys.stderr)
    if chosen in ("", "otlp"):
        return "otlp", _otlp_exporter(env, endpoint)
    raise ConfigError("OTEL_TRACES_EXPORTER", f"unsupported exporter {chosen!r}")


def _otlp_traces_endpoint(env: Mapping[str, str]) -> str | None:
    """The signal-specific endpoint as is, or the base endpoint plus `/v1/traces`."""
    if traces := env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    if base := env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return base.rstrip("/") + "/v1/traces"
    return None


def _otlp_exporter(env: Mapping[str, str], endpoint: str | None) -> SpanExporter:
    # Imported here: the OTLP stack (protobuf, requests) loads only when it is used.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    headers = _parse_headers(
        env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS", "")
    )
    kwargs: dict[str, Any] = {"headers": headers or None}
    if endpoint is not None:
        kwargs["endpoint"] = endpoint
    return OTLPSpanExporter(**kwargs)


def _parse_headers(text: str) -> dict[str, str]:
    """`k1=v1,k2=v2` (values URL-encoded), the OTEL_EXPORTER_OTLP_HEADERS format."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            headers[unquote(key.strip())] = unquote(value.strip())
    return headers
