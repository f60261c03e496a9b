"""The typed client and the CLI load no part of the server (issue 13, item 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Top-level packages (and app modules) that only the server, store or telemetry need.
SERVER_ONLY = (
    "litestar",
    "sqlalchemy",
    "opentelemetry",
    "prometheus_client",
    "uvicorn",
    "treadle.modules.api",
    "treadle.modules.ui",
    "treadle.modules.orchestrator",
    "treadle.store",
    "treadle.observability",
    "treadle.wiring",
    "treadle.serving",
)

_PROBE = """
import importlib, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
prefixes = sys.argv[1].split(",")
print("\\n".join(sorted(
    m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in prefixes)
)))
"""


def loaded_server_modules(*modules: str) -> list[str]:
    """The server-only modules a fresh interpreter holds after importing `modules`."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(SERVER_ONLY), *modules],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


@pytest.mark.parametrize("module", ["treadle.client", "treadle.cli", "treadle.api_types"])
def test_a_client_side_module_imports_nothing_of_the_server(module: str) -> None:
    """Importing the client, the CLI or the API's bodies loads no litestar, SQLAlchemy,
    telemetry, UI or store module."""
    assert loaded_server_modules(module) == []


def test_the_probe_sees_the_server_when_it_is_imported() -> None:
    """The probe itself works: importing the API module shows litestar and the UI."""
    loaded = loaded_server_modules("treadle.modules.api")
    assert "litestar" in loaded
    assert "treadle.modules.ui" in loaded


def test_the_cli_parser_loads_no_http_client() -> None:
    """`treadle --help` (importing the CLI and building its parser) loads no httpx: the
    HTTP client, whose import also pulls httpx's own CLI (rich, click), loads only when a
    command calls the API."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, treadle.cli; treadle.cli.build_parser(); print('httpx' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "False"
