"""Tracing: spans join a W3C traceparent, and the context propagates with or without export."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from treadle.config import ConfigError
from treadle.observability import Tracing, current_trace_ids, current_traceparent, inject_headers
from treadle.observability._tracing import sampler_from_env

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_a_span_from_a_traceparent_joins_that_trace(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    """Given a traceparent, the span has its trace id and the header's span as parent."""
    with tracing.span("task", traceparent=TRACEPARENT, attributes={"run.id": "r1", "x": None}):
        pass

    [span] = spans.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None
    assert f"{span.parent.span_id:016x}" == PARENT_ID
    assert span.parent.is_remote
    assert dict(span.attributes or {}) == {"run.id": "r1"}


def test_without_a_traceparent_the_span_is_a_child_of_the_current_one(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    """Nested spans form one trace."""
    with tracing.span("outer"), tracing.span("inner"):
        pass

    inner, outer = spans.get_finished_spans()
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id


def test_an_invalid_traceparent_starts_a_new_trace(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    """A garbled header is ignored rather than failing the work."""
    with tracing.span("task", traceparent="not-a-traceparent"):
        pass

    [span] = spans.get_finished_spans()
    assert span.parent is None


def test_current_traceparent_round_trips(tracing: Tracing, spans: InMemorySpanExporter) -> None:
    """The traceparent stamped inside a span names that span; a child started from it joins."""
    assert current_traceparent() is None
    with tracing.span("decision") as decision:
        stamped = tracing.current_traceparent()
    with tracing.span("task", traceparent=stamped):
        pass

    ctx = decision.get_span_context()
    # The flags byte is 01 (sampled) or 03 (sampled, random trace id: W3C level 2).
    assert stamped is not None
    assert stamped.startswith(f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-0")
    task = spans.get_finished_spans()[-1]
    assert task.context.trace_id == ctx.trace_id
    assert task.parent is not None
    assert task.parent.span_id == ctx.span_id


def test_exceptions_mark_the_span_as_an_error(
    tracing: Tracing, spans: InMemorySpanExporter
) -> None:
    """An exception leaving the block is recorded on the span and re-raised."""
    with pytest.raises(ValueError, match="boom"), tracing.span("task"):
        raise ValueError("boom")

    [span] = spans.get_finished_spans()
    assert not span.status.is_ok
    assert span.events[0].name == "exception"


def test_inject_headers_adds_traceparent_for_http_calls(tracing: Tracing) -> None:
    """Outgoing HTTP headers get the current span's traceparent."""
    headers = {"accept": "application/json"}
    with tracing.span("call"):
        inject_headers(headers)
        ids = current_trace_ids()

    assert ids is not None
    assert headers["traceparent"].startswith(f"00-{ids[0]}-{ids[1]}-")


def test_no_exporter_still_propagates_the_incoming_trace() -> None:
    """With no OTEL_* set there is no exporter, no error, and the trace id carries on."""
    tracing = Tracing.from_env("treadle", {})
    with tracing.span("task", traceparent=TRACEPARENT):
        outgoing = current_traceparent()
    tracing.shutdown()

    assert tracing.exporter_name == "none"
    assert outgoing is not None
    _version, trace_id, span_id, flags = outgoing.split("-")
    assert (trace_id, flags) == (TRACE_ID, "01")
    assert span_id != PARENT_ID


def test_disabled_sdk_passes_the_traceparent_through_unchanged() -> None:
    """OTEL_SDK_DISABLED makes no spans; the incoming context stays current as it is."""
    tracing = Tracing.from_env("treadle", {"OTEL_SDK_DISABLED": "true"})
    with tracing.span("task", traceparent=TRACEPARENT):
        outgoing = current_traceparent()
    with tracing.span("root"):
        assert current_traceparent() is None
    tracing.shutdown()

    assert tracing.exporter_name == "disabled"
    assert outgoing == TRACEPARENT


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, "none", id="nothing-set"),
        pytest.param({"OTEL_TRACES_EXPORTER": "console"}, "console", id="console"),
        pytest.param({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "otlp", id="endpoint"),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"},
            "otlp",
            id="traces-endpoint",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
            "none",
            id="explicit-none",
        ),
    ],
)
def test_the_exporter_is_chosen_from_the_environment(
    environ: dict[str, str], expected: str
) -> None:
    """OTLP when an endpoint is set, console on request, none by default."""
    tracing = Tracing.from_env("treadle", environ)
    try:
        assert tracing.exporter_name == expected
    finally:
        tracing.shutdown()


def test_otel_service_name_wins_over_the_given_name() -> None:
    """OTEL_SERVICE_NAME sets service.name on the provider's resource."""
    tracing = Tracing.from_env("treadle", {"OTEL_SERVICE_NAME": "orders-engine"})
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == "orders-engine"
    tracing.shutdown()


def test_sampler_comes_from_the_environment() -> None:
    """OTEL_TRACES_SAMPLER/ARG select the sampler; the default follows the parent."""
    assert isinstance(sampler_from_env({}), ParentBased)
    ratio = sampler_from_env(
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert isinstance(ratio, TraceIdRatioBased)
    assert ratio.rate == 0.25


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({"OTEL_TRACES_SAMPLER": "sometimes"}, id="sampler"),
        pytest.param(
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, id="ratio"
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "zipkin"}, id="exporter"),
    ],
)
def test_bad_otel_settings_are_config_errors(environ: dict[str, str]) -> None:
    """An unsupported sampler, ratio or exporter fails at start-up naming the variable."""
    with pytest.raises(ConfigError, match="OTEL_TRACES"):
        Tracing.from_env("treadle", environ)
