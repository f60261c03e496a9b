"""Tracing: spans join a W3C traceparent, and the context propagates with or without export."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from tests.unit.observability.conftest import OtelEnv
from treadle.config import ConfigError
from treadle.observability import Tracing, current_trace_ids, current_traceparent, inject_headers
from treadle.observability._tracing import exporters_from_env, sampler_from_env

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


def test_no_exporter_still_propagates_the_incoming_trace(otel_env: OtelEnv) -> None:
    """With no OTEL_* set there is no exporter, no error, and the trace id carries on."""
    tracing = Tracing.from_env("treadle")
    with tracing.span("task", traceparent=TRACEPARENT):
        outgoing = current_traceparent()
    tracing.shutdown()

    assert tracing.exporter_name == "none"
    assert outgoing is not None
    _version, trace_id, span_id, flags = outgoing.split("-")
    assert (trace_id, flags) == (TRACE_ID, "01")
    assert span_id != PARENT_ID


def test_disabled_sdk_passes_the_traceparent_through_unchanged(otel_env: OtelEnv) -> None:
    """OTEL_SDK_DISABLED makes no spans; the incoming context stays current as it is."""
    otel_env.set(OTEL_SDK_DISABLED="true")
    tracing = Tracing.from_env("treadle")
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
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "otlp_proto_http", id="endpoint"
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:9/v1/traces"},
            "otlp_proto_http",
            id="traces-endpoint",
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp_proto_http", id="otlp-default"),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "otlp_proto_grpc",
            id="otlp-grpc",
        ),
        pytest.param(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_TRACES_EXPORTER": "none"},
            "none",
            id="explicit-none",
        ),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "console,otlp_proto_grpc"},
            "console,otlp_proto_grpc",
            id="two",
        ),
    ],
)
def test_the_exporter_is_chosen_from_the_environment(
    otel_env: OtelEnv, environ: dict[str, str], expected: str
) -> None:
    """OTLP when an endpoint is set, console on request, none by default; the SDK's names."""
    otel_env.set(**environ)
    tracing = Tracing.from_env("treadle")
    try:
        assert tracing.exporter_name == expected
    finally:
        tracing.shutdown()


def test_grpc_protocol_makes_the_grpc_exporter_reading_its_own_variables(
    otel_env: OtelEnv,
) -> None:
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc exports over gRPC, to the endpoint and with the
    headers the standard variables give (read by the exporter, not by Treadle)."""
    otel_env.set(
        OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317",
        OTEL_EXPORTER_OTLP_HEADERS="x-team=orders",
    )
    names, exporters = exporters_from_env()
    try:
        assert names == ["otlp_proto_grpc"]
        (exporter,) = exporters
        assert isinstance(exporter, GrpcSpanExporter)
        assert exporter._endpoint == "127.0.0.1:4317"
        assert ("x-team", "orders") in tuple(exporter._headers or ())
    finally:
        for exporter in exporters:
            exporter.shutdown()


def test_http_exporter_takes_the_traces_path_from_the_base_endpoint(otel_env: OtelEnv) -> None:
    """The OTLP/HTTP exporter appends /v1/traces to OTEL_EXPORTER_OTLP_ENDPOINT itself."""
    otel_env.set(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318")
    _, (exporter,) = exporters_from_env()
    try:
        assert isinstance(exporter, HttpSpanExporter)
        assert exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    finally:
        exporter.shutdown()


def test_otel_service_name_wins_over_the_given_name(otel_env: OtelEnv) -> None:
    """OTEL_SERVICE_NAME sets service.name on the provider's resource."""
    otel_env.set(OTEL_SERVICE_NAME="orders-engine")
    tracing = Tracing.from_env("treadle")
    assert tracing.provider is not None
    assert tracing.provider.resource.attributes["service.name"] == "orders-engine"
    tracing.shutdown()


def test_resource_attributes_come_from_the_environment(otel_env: OtelEnv) -> None:
    """OTEL_RESOURCE_ATTRIBUTES adds to the resource; without a name, the service is treadle."""
    otel_env.set(OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging")
    tracing = Tracing.from_env("treadle", **{"treadle.role": "worker"})
    assert tracing.provider is not None
    attributes = tracing.provider.resource.attributes
    assert attributes["deployment.environment"] == "staging"
    assert attributes["service.name"] == "treadle"
    assert attributes["treadle.role"] == "worker"
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
    ("environ", "key"),
    [
        pytest.param({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER", id="sampler"),
        pytest.param(
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG",
            id="ratio",
        ),
        pytest.param({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", id="exporter"),
        pytest.param(
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            id="protocol",
        ),
    ],
)
def test_bad_otel_settings_are_config_errors(
    otel_env: OtelEnv, environ: dict[str, str], key: str
) -> None:
    """An unsupported sampler, ratio, exporter or protocol fails at start-up naming it."""
    otel_env.set(**environ)
    with pytest.raises(ConfigError) as raised:
        Tracing.from_env("treadle")
    assert raised.value.key == key
