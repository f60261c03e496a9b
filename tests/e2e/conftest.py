"""Start `treadle serve` as a real subprocess on the embedded default or PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SMALL_POOL = {"TREADLE_DATABASE__POOL_SIZE": "2"}
"""For every `treadle serve` a test starts: 2 (+2 overflow) connections a process, so four
xdist workers each running a 7-process cluster stay under PostgreSQL's default 100."""
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Server:
    """A running `treadle serve` process and an HTTP client pointed at it."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        # X-Treadle-Request: a keyless server refuses body-less writes without it (CSRF).
        self.http = httpx.Client(base_url=url, timeout=10, headers={"X-Treadle-Request": "1"})

    def wait_for_run(self, run_id: str, timeout: float = 30) -> dict[str, Any]:
        """Poll the run until it is terminal; fail the test with the server log if not."""
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = self.http.get(f"/v1/runs/{run_id}").json()
            if run.get("status") in TERMINAL:
                return run
            time.sleep(0.1)
        pytest.fail(f"run {run_id} not finished after {timeout}s: {run}\n{self.tail()}")

    def start(self, workflow: str, input: Any, **headers: str) -> httpx.Response:
        """POST /v1/runs."""
        return self.http.post(
            "/v1/runs", json={"workflow": workflow, "input": input}, headers=headers
        )

    def tail(self, lines: int = 60) -> str:
        """The end of the server's output, for failure messages."""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> int:
        """SIGTERM, then wait for a clean exit."""
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(tmp_path: Path, database_url: str, *extra: str) -> Server:
    """Start `treadle serve` with the e2e handlers and wait until it is ready."""
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    env = {
        **os.environ,
        "TREADLE_DATABASE_URL": database_url,
        **SMALL_POOL,
        "TREADLE_ORCHESTRATOR__TIMER_POLL_SECONDS": "0.2",
        # A cancelled run's handler may still be sleeping; do not wait 30 s for it on stop.
        "TREADLE_WORKER__DRAIN_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "treadle.cli", "serve", "--port", str(port)]
    cmd += ["--handlers", "tests.e2e.handlers", *extra]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"treadle serve exited with {proc.returncode}:\n{server.tail()}")
        try:
            if server.http.get("/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"treadle serve not ready after 30s:\n{server.tail()}")


def _admin(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The embedded SQLite file, or a fresh PostgreSQL database dropped after the test."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
        return
    name = f"treadle_e2e_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def serve(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Server]]:
    """Start servers on this test's database; stop them all at the end."""
    servers: list[Server] = []

    def _start(*extra: str) -> Server:
        if database_url.startswith("postgresql"):
            migrate = subprocess.run(
                [sys.executable, "-m", "treadle.cli", "migrate"],
                cwd=ROOT,
                env={**os.environ, "TREADLE_DATABASE_URL": database_url},
                capture_output=True,
                text=True,
                check=False,
            )
            assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        server = start_server(tmp_path, database_url, *extra)
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
