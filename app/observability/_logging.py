"""Structured logs: JSON lines (or a console format) for our loggers and everyone else's.

structlog renders through the stdlib's `ProcessorFormatter`, installed on the root
logger, so uvicorn, SQLAlchemy and the broker clients come out in the same format as
our own lines. Logging is process-wide by nature, so `configure_logging` is the one
place that touches global state; it is idempotent and the CLI calls it once.

Everything that depends on the settings (role, redaction, renderer) lives in the
formatter, not in structlog's own chain, so reconfiguring never leaves a cached logger
behind with stale settings.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import IO, Any

import msgspec
import structlog
from opentelemetry import trace

from treadle.config import ConfigError, LogSettings
from treadle.observability._redact import Redactor

_KEY_ORDER = ("time", "level", "logger", "message", "role")
"""The keys every JSON line starts with, so lines read the same in a terminal."""

_Processor = Any  # structlog's Processor type alias is too loose to help mypy here


class _TreadleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our root handler, marked by its class so reconfiguring replaces only it."""


def configure_logging(settings: LogSettings, role: str, *, stream: IO[str] | None = None) -> None:
    """Send every log record in the process to `stream` (stdout) in the configured format.

    Call once at start-up (the CLI does); calling again replaces the previous setup.
    """
    level = _parse_level(settings.level)
    out = sys.stdout if stream is None else stream
    structlog.configure(
        processors=_structlog_chain(),
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a module-level logger first used before this call (an import-time
        # line, a test) would otherwise keep structlog's default printer for good.
        cache_logger_on_first_use=False,
    )
    handler = _TreadleHandler(out)
    handler.setFormatter(
        _formatter(settings, role, console=_wants_console(settings, out), stream=out)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _TreadleHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in settings.quiet_loggers:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger; `log.info("task done", output=value)` takes context as kwargs."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bind_context(**values: Any) -> Iterator[None]:
    """Add `values` (run_id, task_id, attempt, ...) to every log line inside the block.

    Bound in a contextvar, so it follows the code into awaited calls and into tasks
    started inside the block, and never leaks into a sibling request or task. None
    values are skipped, so callers can pass what they know without checks.
    """
    known = {key: value for key, value in values.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**known):
        yield


def _parse_level(name: str) -> int:
    level = logging.getLevelNamesMapping().get(name.upper())
    if level is None:
        raise ConfigError("log.level", f"unknown level {name!r}; use debug, info, warning, error")
    return level


def _wants_console(settings: LogSettings, stream: IO[str]) -> bool:
    if settings.format == "auto":
        return _is_terminal(stream)
    return settings.format == "console"


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _structlog_chain() -> list[_Processor]:
    """What runs when our own code logs: settings-independent, then handed to stdlib."""
    return [
        structlog.stdlib.filter_by_level,  # skip the work for lines nobody will see
        *_gathering_chain(),
        structlog.processors.StackInfoRenderer(),
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
    ]


def _gathering_chain() -> list[_Processor]:
    """Facts taken at the call site, for our lines and third-party records alike."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def _formatter(
    settings: LogSettings, role: str, *, console: bool, stream: IO[str]
) -> structlog.stdlib.ProcessorFormatter:
    common: list[_Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        _RoleAdder(role),
        add_trace_ids,
        Redactor(settings.max_value_bytes),
    ]
    if console:
        # Colours only on a terminal: escape codes in a file or a pipe are noise.
        renderer = structlog.dev.ConsoleRenderer(colors=_is_terminal(stream))
        tail: list[_Processor] = [renderer]
    else:
        tail = [
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            _order_keys,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ]
    return structlog.stdlib.ProcessorFormatter(
        processors=[*common, *tail],
        foreign_pre_chain=[*_gathering_chain(), structlog.stdlib.ExtraAdder(), _drop_colour_copy],
    )


_COLOUR_COPIES = ("color_message",)
"""Extras uvicorn adds to its records: the message again with ANSI escapes, for its own
console formatter. Ours renders the plain message; the copy would be noise in every line."""


def _drop_colour_copy(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key in _COLOUR_COPIES:
        event_dict.pop(key, None)
    return event_dict


class _RoleAdder:
    """Stamps the process role, unless the line already says which role logged it."""

    def __init__(self, role: str) -> None:
        self.role = role

    def __call__(
        self, _logger: object, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("role", self.role)
        return event_dict


def add_trace_ids(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add the current OpenTelemetry span's trace_id and span_id (hex), when there is one."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", trace.format_trace_id(context.trace_id))
        event_dict.setdefault("span_id", trace.format_span_id(context.span_id))
    return event_dict


def _order_keys(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> dict[str, Any]:
    ordered = {key: event_dict.pop(key) for key in _KEY_ORDER if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _dumps(obj: Any, **_ignored: Any) -> str:
    # msgspec encodes datetimes and Structs natively; anything else falls back to str.
    return msgspec.json.encode(obj, enc_hook=str).decode()
