"""Log lines: JSON shape, bound context, trace ids, third-party records, console format."""

from __future__ import annotations

import io
import logging
from datetime import datetime

import pytest

from tests.unit.observability.conftest import LogCapture
from treadle.config import ConfigError, LogSettings
from treadle.observability import Tracing, bind_context, configure_logging, get_logger


def test_json_line_has_the_standard_keys(logs: LogCapture) -> None:
    """A structlog line is one JSON object with time, level, logger, message and role."""
    get_logger("treadle.test").info("hello", extra_fact=3)

    [line] = logs.lines()
    assert list(line)[:5] == ["time", "level", "logger", "message", "role"]
    assert line["level"] == "info"
    assert line["logger"] == "treadle.test"
    assert line["message"] == "hello"
    assert line["role"] == "worker"
    assert line["extra_fact"] == 3
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None


def test_bound_context_is_on_every_line_inside_the_block(logs: LogCapture) -> None:
    """bind_context adds run_id/task_id/attempt inside the block and nothing after it."""
    log = get_logger("treadle.test")
    with bind_context(run_id="r1", task_id="t1", attempt=2, workflow=None):
        log.info("inside")
        logging.getLogger("sqlalchemy.engine").warning("stdlib inside")
    log.info("outside")

    # This test's lines only: in a shared test process, a connection another test left to
    # the garbage collector can make SQLAlchemy log a line of its own at any moment.
    first: dict[str, dict[str, object]] = {}
    for line in logs.lines():
        first.setdefault(str(line["message"]), line)
    inside, stdlib_inside, outside = (first[m] for m in ("inside", "stdlib inside", "outside"))
    for line in (inside, stdlib_inside):
        assert (line["run_id"], line["task_id"], line["attempt"]) == ("r1", "t1", 2)
        assert "workflow" not in line
    assert "run_id" not in outside


def test_bound_role_overrides_the_process_role(logs: LogCapture) -> None:
    """In an all-roles process, a block bound with role=worker logs as the worker."""
    logs.configure(role="api,orchestrator,worker", format="json")
    with bind_context(role="worker"):
        get_logger("x").info("in a task")
    get_logger("x").info("elsewhere")

    assert [line["role"] for line in logs.lines()] == ["worker", "api,orchestrator,worker"]


def test_lines_inside_a_span_carry_its_trace_and_span_ids(
    logs: LogCapture, tracing: Tracing
) -> None:
    """A line logged inside a span has the span's trace_id and span_id in hex."""
    with tracing.span("work") as span:
        get_logger("x").info("traced")
    get_logger("x").info("untraced")

    traced, untraced = logs.lines()
    context = span.get_span_context()
    assert traced["trace_id"] == f"{context.trace_id:032x}"
    assert traced["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in untraced


def test_third_party_stdlib_records_come_out_as_json(logs: LogCapture) -> None:
    """uvicorn's stdlib logger, with %-args and extra=, renders as the same JSON."""
    logging.getLogger("uvicorn.error").info("Started server %s", "1", extra={"port": 8000})

    [line] = logs.lines()
    assert line["logger"] == "uvicorn.error"
    assert line["message"] == "Started server 1"
    assert line["level"] == "info"
    assert line["role"] == "worker"
    assert line["port"] == 8000


def test_uvicorns_coloured_copy_of_the_message_is_left_out(logs: LogCapture) -> None:
    """uvicorn's `color_message` extra (the message with ANSI escapes) is not in the line."""
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        42,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )

    [line] = logs.lines()
    assert line["message"] == "Started server process [42]"
    assert "color_message" not in line
    assert "\x1b" not in logs.text()


def test_alembic_start_up_lines_are_quiet_by_default() -> None:
    """alembic's info lines (plugins, the dialect, each revision) are held at warning."""
    capture = LogCapture()
    capture.configure(format="json")  # the default settings: level info
    for logger in ("alembic.runtime.migration", "alembic.runtime.plugins"):
        logging.getLogger(logger).info("Context impl SQLiteImpl.")
    logging.getLogger("alembic.runtime.migration").warning("a revision is missing")

    assert [line["message"] for line in capture.lines()] == ["a revision is missing"]


def test_exceptions_are_rendered_into_the_line(logs: LogCapture) -> None:
    """log.exception puts the traceback in an `exception` string of the same line."""
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("x").exception("it failed")

    [line] = logs.lines()
    assert line["level"] == "error"
    assert "ValueError: boom" in line["exception"]


def test_configuring_twice_does_not_duplicate_lines(logs: LogCapture) -> None:
    """configure_logging is idempotent: a second call replaces the handler, not adds one."""
    logs.configure(format="json")
    get_logger("x").info("once")

    assert [line["message"] for line in logs.lines()] == ["once"]


def test_level_filters_our_lines_and_third_party_ones(logs: LogCapture) -> None:
    """At warning level, info lines from structlog and stdlib loggers are dropped."""
    logs.configure(format="json", level="WARNING")
    get_logger("x").info("quiet")
    logging.getLogger("uvicorn.error").info("quiet too")
    get_logger("x").warning("loud")

    assert [line["message"] for line in logs.lines()] == ["loud"]


def test_chatty_libraries_are_held_at_warning(logs: LogCapture) -> None:
    """aiokafka's info lines are dropped even at debug level; its warnings are kept."""
    logging.getLogger("aiokafka").info("joined group")
    logging.getLogger("aiokafka").warning("rebalancing")

    assert [line["message"] for line in logs.lines()] == ["rebalancing"]


def test_console_format_is_human_readable() -> None:
    """format=console renders key=value text rather than JSON."""
    capture = LogCapture()
    capture.configure(format="console")
    with bind_context(run_id="r9"):
        get_logger("x").info("starting")

    text = capture.text()
    assert "starting" in text
    assert "run_id=r9" in text
    assert not text.lstrip().startswith("{")


def test_auto_format_is_json_when_not_a_terminal() -> None:
    """format=auto writes JSON to a stream that is not a TTY."""
    capture = LogCapture()
    capture.configure(format="auto")
    get_logger("x").info("piped")

    assert capture.lines()[0]["message"] == "piped"


def test_auto_format_is_console_on_a_terminal() -> None:
    """format=auto writes the console format to a TTY."""

    class FakeTerminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = FakeTerminal()
    configure_logging(LogSettings(format="auto"), "api", stream=stream)
    get_logger("x").info("interactive")

    assert "interactive" in stream.getvalue()
    assert not stream.getvalue().lstrip().startswith("{")


def test_an_unknown_level_is_a_config_error() -> None:
    """A misspelt level fails at start-up naming log.level."""
    with pytest.raises(ConfigError) as caught:
        configure_logging(LogSettings(level="chatty"), "api", stream=io.StringIO())
    assert caught.value.key == "log.level"
