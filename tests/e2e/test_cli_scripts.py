"""The CLI as a script uses it, against a real `treadle serve --example`: input files,
JSON and JSON lines, paging by cursor, `describe`, and waiting by the long poll."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Server

pytestmark = pytest.mark.e2e

ORDER = {"sku": "book-42", "amount": 12.5, "email": "ada@example.com"}


def treadle(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the `treadle` CLI against the server, stdout piped as a script's would be."""
    done = subprocess.run(
        [sys.executable, "-m", "treadle.cli", "--url", server.url, *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_script_starts_waits_pages_and_describes_runs(
    serve: Callable[..., Server], tmp_path: Path
) -> None:
    """Start from a file and wait (JSON out, exit 0); watch as JSON lines; page the runs
    one at a time by cursor and all at once; describe shows the retried attempt."""
    server = serve("--example")
    order = tmp_path / "order.json"
    order.write_text(json.dumps(ORDER))

    waited = treadle(server, "run", "start", "order-fulfillment", "--input-file", str(order),
                     "--wait")  # fmt: skip
    assert waited.returncode == 0, waited.stderr + server.tail()
    first = json.loads(waited.stdout)
    assert first["status"] == "completed"

    started = treadle(server, "run", "start", "order-fulfillment", "--input", json.dumps(ORDER))
    second = json.loads(started.stdout)["id"]
    watched = treadle(server, "run", "watch", second, "-o", "jsonl")
    assert watched.returncode == 0, watched.stderr
    entries = [json.loads(line) for line in watched.stdout.splitlines()]
    assert entries[0]["type"] == "run.started"
    assert entries[-1]["type"] == "run.completed"

    page = json.loads(treadle(server, "run", "list", "--limit", "1", "-o", "json").stdout)
    assert [r["id"] for r in page["items"]] == [second]  # newest first
    following = treadle(server, "run", "list", "--limit", "1", "--cursor", page["next_cursor"],
                        "-o", "json")  # fmt: skip
    assert [r["id"] for r in json.loads(following.stdout)["items"]] == [first["id"]]
    every = treadle(server, "run", "list", "--all", "--limit", "1", "-o", "jsonl")
    assert [json.loads(line)["id"] for line in every.stdout.splitlines()] == [second, first["id"]]

    described = treadle(server, "run", "describe", first["id"])
    assert described.returncode == 0
    lines = described.stdout.splitlines()
    assert lines[0] == f"run {first['id']}  order-fulfillment v1  completed"
    charge = [line.split() for line in lines if line.startswith("charge ")]
    # The failed first attempt (its row has no type), then the attempt that completed.
    assert charge[0][1:3] == ["failed", "1"]
    assert charge[1][1:4] == ["handler", "completed", "2"]
    assert "ConnectionError: payment provider timed out" in described.stdout
