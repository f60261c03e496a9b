"""Logs, metrics and traces for every role.

- Process-wide, once, in the CLI: `configure_logging(settings.log, role)`.
- Per engine, in `build()`: `Telemetry.from_settings(settings, role)`, handed to the api,
  orchestrator and worker; `telemetry.close()` when the engine closes.
- Anywhere: `get_logger(__name__)`, `bind_context(run_id=...)`,
  `current_traceparent()` to stamp an outgoing message.
"""

from __future__ import annotations

from treadle.observability._access import ACCESS_LOGGER, access_logged
from treadle.observability._asgi import TelemetryMiddleware, metrics_app
from treadle.observability._collect import collect_store_gauges, collect_store_gauges_once
from treadle.observability._logging import (
    add_trace_ids,
    bind_context,
    configure_logging,
    get_logger,
)
from treadle.observability._metrics import Metrics, TaskOutcome
from treadle.observability._redact import Redactor, strip_url_passwords
from treadle.observability._telemetry import Telemetry, record_http_status
from treadle.observability._tracing import (
    RUN_ID,
    TASK_ATTEMPT,
    TASK_ID,
    WORKFLOW_NAME,
    Tracing,
    current_trace_ids,
    current_traceparent,
    extract_context,
    inject_headers,
)

__all__ = [
    "ACCESS_LOGGER",
    "RUN_ID",
    "TASK_ATTEMPT",
    "TASK_ID",
    "WORKFLOW_NAME",
    "Metrics",
    "Redactor",
    "TaskOutcome",
    "Telemetry",
    "TelemetryMiddleware",
    "Tracing",
    "access_logged",
    "add_trace_ids",
    "bind_context",
    "collect_store_gauges",
    "collect_store_gauges_once",
    "configure_logging",
    "current_trace_ids",
    "current_traceparent",
    "extract_context",
    "get_logger",
    "inject_headers",
    "metrics_app",
    "record_http_status",
    "strip_url_passwords",
]
