"""Shared fixtures: async tests run on asyncio and trio unless a folder narrows it."""

from __future__ import annotations

import faulthandler
import subprocess
from collections.abc import Iterator

import pytest

POSTGRES_CONNECTIONS_NEEDED = 300
"""What four xdist workers' multi-process clusters hold at once (README, Testing)."""

WATCHDOG_GRACE_SECONDS = 180.0
"""How long past its pytest-timeout a test may hang before its process dumps and exits."""


@pytest.fixture(
    params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")],
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test on both anyio backends (integration folders override this)."""
    return str(request.param)


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--soak` opts in to the long `soak`-marked variants (skipped otherwise)."""
    parser.addoption("--soak", action="store_true", help="also run tests marked soak")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `soak` tests unless --soak was given: they are too long for every CI run."""
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="soak test: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say up front when PostgreSQL allows fewer connections than the suite needs."""
    del config
    try:
        shown = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW max_connections"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "PostgreSQL max_connections: unknown (psql did not answer)"
    if shown.isdigit() and int(shown) < POSTGRES_CONNECTIONS_NEEDED:
        return (
            f"WARNING: PostgreSQL max_connections is {shown}; the suite needs "
            f"{POSTGRES_CONNECTIONS_NEEDED} (README, Testing; .ci/run raises it), or tests "
            "fail with 'too many clients already'"
        )
    return f"PostgreSQL max_connections: {shown}"


_FAULT_LINES: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the fault suite's `FAULT-SCENARIO` lines from each test's captured output."""
    if report.when != "call":
        return
    for _, text in report.sections:
        _FAULT_LINES.extend(line for line in text.splitlines() if line.startswith("FAULT-SCENARIO"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show what each fault scenario did (runs, faults, recovery) even when it passed."""
    if _FAULT_LINES:
        terminalreporter.section("fault scenarios")
        for line in _FAULT_LINES:
            terminalreporter.write_line(line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """A last-resort watchdog: a test that hangs past its timeout ends its process.

    pytest-timeout fires once per test; a hang after it fired (in a teardown, or in an
    event loop's shutdown) would stall the whole run. Dumping every thread's stack and
    exiting turns that into one failed test (xdist replaces the worker) with its cause.
    """
    marker = item.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else item.config.getini("timeout")
    faulthandler.dump_traceback_later(
        float(limit or 120) + WATCHDOG_GRACE_SECONDS, exit=True, file=2
    )
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
