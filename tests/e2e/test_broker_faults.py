"""Broker faults: an unreachable broker at start-up, and undecodable messages on a live cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, free_port

pytestmark = pytest.mark.e2e

CONNECT_WINDOW = 3.0


def test_an_unreachable_broker_is_retried_then_named_in_one_line_and_exit_code(
    tmp_path: Path,
) -> None:
    """A worker whose broker refuses connections logs each retry, then exits 1 with one line."""
    port = free_port()  # nothing listens there
    env = {
        **os.environ,
        "TREADLE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}",
        "TREADLE_TRANSPORT": "rabbitmq",
        "TREADLE_BROKER_URL": f"amqp://guest:s3cret@127.0.0.1:{port}/",
        "TREADLE_TRANSPORT__CONNECT_TIMEOUT_SECONDS": str(CONNECT_WINDOW),
        "TREADLE_LOG__FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--roles", "worker", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    redacted = f"amqp://guest:***@127.0.0.1:{port}/"
    assert done.returncode == 1, done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1, done.stderr
    assert error[0].startswith(f"treadle: cannot reach the broker at {redacted} after ")
    retries = [
        line
        for line in map(json.loads, done.stdout.splitlines())
        if line["message"].startswith("cannot connect to the broker")
    ]
    assert len(retries) >= 2, done.stdout
    assert {line["url"] for line in retries} == {redacted}
    assert [line["attempt"] for line in retries] == list(range(1, len(retries) + 1))
