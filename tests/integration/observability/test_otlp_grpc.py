"""OTEL_EXPORTER_OTLP_PROTOCOL=grpc: spans reach a real OTLP/gRPC receiver on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from tests.ports import free_port
from treadle.observability import Tracing


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps the name of every span exported to it, and the request metadata."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.metadata: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def Export(  # the generated servicer's method name
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            self.metadata.extend((k, str(v)) for k, v in context.invocation_metadata())
            self.names.extend(
                span.name
                for rs in request.resource_spans
                for ss in rs.scope_spans
                for span in ss.spans
            )
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC trace receiver on 127.0.0.1 and its port."""
    found = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(found, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield found, port
    finally:
        server.stop(grace=None).wait()


def test_spans_are_exported_over_grpc_when_the_protocol_says_so(
    receiver: tuple[Receiver, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only standard variables set (protocol, endpoint, headers), the span arrives at
    the gRPC receiver carrying the configured header."""
    found, port = receiver
    for key in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=orders")
    tracing = Tracing.from_env("treadle")
    with tracing.span("decide run.started"):
        pass
    tracing.shutdown()  # flushes the batch

    assert tracing.exporter_name == "otlp_proto_grpc"
    assert found.names == ["decide run.started"]
    assert ("x-tenant", "orders") in found.metadata
