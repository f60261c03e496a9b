"""The README's quick start: `treadle serve --example`, then the CLI from a second terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e


def treadle(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `treadle` CLI against the server."""
    return subprocess.run(
        [sys.executable, "-m", "treadle.cli", "--url", server.url, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_quickstart_runs_to_completion_with_the_cli(serve: Callable[..., Server]) -> None:
    """The example workflow starts with `run start`, and `run watch` follows it to the end."""
    server = serve("--example")
    order = {"sku": "book-42", "amount": 12.5, "email": "ada@example.com"}
    started = treadle(server, "run", "start", "order-fulfillment", "--input", json.dumps(order))
    assert started.returncode == 0, started.stdout + started.stderr
    run_id = json.loads(started.stdout)["id"]
    watched = treadle(server, "run", "watch", run_id)
    assert watched.returncode == 0, watched.stdout + watched.stderr + server.tail()
    assert "completed" in watched.stdout
    run = server.http.get(f"/v1/runs/{run_id}").json()
    assert run["status"] == "completed"
    assert run["output"]["tracking"].startswith("TRK-")
    charge = next(t for t in run["tasks"] if t["task_id"] == "charge")
    assert charge["attempt"] == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cli_reports_bad_input_in_one_line(serve: Callable[..., Server]) -> None:
    """Invalid --input JSON and an input that fails the schema are clear errors, not tracebacks."""
    server = serve("--example")
    bad_json = treadle(server, "run", "start", "order-fulfillment", "--input", "{nope")
    assert bad_json.returncode == 2
    assert "--input" in bad_json.stderr
    assert "Traceback" not in bad_json.stderr
    bad_input = treadle(server, "run", "start", "order-fulfillment", "--input", "{}")
    assert bad_input.returncode == 1
    assert "sku" in bad_input.stderr
    assert "Traceback" not in bad_input.stderr
