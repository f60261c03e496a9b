"""Fixtures for the observability tests: logging is process-wide, so each test restores it."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from treadle.config import LogSettings
from treadle.observability import Tracing, configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger, the named loggers' levels and structlog back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("aiokafka", "alembic", "uvicorn.error", "treadle.access")
    named = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in named.items():
        logging.getLogger(name).setLevel(old)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


class LogCapture:
    """Logging configured into a buffer; `lines()` decodes what was written."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def configure(self, role: str = "worker", **settings: Any) -> None:
        configure_logging(LogSettings(**settings), role, stream=self.stream)

    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines() if line]


@pytest.fixture
def logs() -> LogCapture:
    """JSON logging at debug level into a buffer, role `worker`."""
    capture = LogCapture()
    capture.configure(format="json", level="debug")
    return capture


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """An in-memory exporter that collects finished spans."""
    return InMemorySpanExporter()


@pytest.fixture
def tracing(spans: InMemorySpanExporter) -> Iterator[Tracing]:
    """A per-test tracer exporting into `spans`."""
    tracer = Tracing.for_tests(spans)
    yield tracer
    tracer.shutdown()


class OtelEnv:
    """Sets `OTEL_*` variables for one test, every other `OTEL_*` variable cleared."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._monkeypatch = monkeypatch
        for key in [k for k in os.environ if k.startswith("OTEL_")]:
            monkeypatch.delenv(key)

    def set(self, **variables: str) -> None:
        for key, value in variables.items():
            self._monkeypatch.setenv(key, value)


@pytest.fixture
def otel_env(monkeypatch: pytest.MonkeyPatch) -> OtelEnv:
    """A clean OpenTelemetry environment: the SDK reads os.environ itself."""
    return OtelEnv(monkeypatch)
