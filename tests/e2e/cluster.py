"""Multi-process clusters for the end-to-end tests: split roles on one database and broker.

A `Cluster` starts `treadle serve --roles ...` processes that share a fresh database
(PostgreSQL or MariaDB, created for the test and dropped after it) and a broker
namespace of their own, so tests never see each other's queues, streams or topics.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.brokers import delete_namespace_of
from tests.databases import mariadb_admin
from tests.e2e.conftest import ROOT, SMALL_POOL, Server, _admin, free_port

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"
READY_SECONDS = 120.0
"""How long a process may take to answer /readyz 200: seven start at once on two busy cores."""


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database's URL, dropped (connections and all) afterwards."""
    name = f"treadle_e2e_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A fresh, empty MariaDB database's URL, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    asyncio.run(mariadb_admin(f"CREATE DATABASE `{name}`"))
    try:
        yield f"mysql+asyncmy://root@127.0.0.1:3306/{name}"
    finally:
        asyncio.run(mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`"))


def broker_env(kind: str, url: str) -> dict[str, str]:
    """The environment that points a process at `kind` on `url`, in a private namespace."""
    env = {
        "TREADLE_TRANSPORT": kind,
        "TREADLE_BROKER_URL": url,
        "TREADLE_TRANSPORT__NAMESPACE": f"e2e-{uuid.uuid4().hex[:10]}",
    }
    if kind == "kafka":
        env["TREADLE_TRANSPORT__KAFKA_IDEMPOTENCE"] = "false"  # Tansu has no InitProducerId
    return env


class Cluster:
    """`treadle serve` processes with split roles on one database and one broker namespace."""

    def __init__(self, tmp_path: Path, database_url: str, env: Mapping[str, str]) -> None:
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.env = {
            **os.environ,
            **env,
            "TREADLE_DATABASE_URL": database_url,
            "TREADLE_DATABASE__MIGRATE_ON_START": "false",
            **SMALL_POOL,
            "TREADLE_ORCHESTRATOR__TIMER_POLL_SECONDS": "0.2",
            "TREADLE_LOG__FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        self.servers: list[Server] = []

    def migrate(self) -> None:
        """`treadle migrate` once, before any process starts (they do not migrate)."""
        done = subprocess.run(
            [sys.executable, "-m", "treadle.cli", "migrate"],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def start(self, *role_sets: str, handlers: Sequence[str] = ()) -> list[Server]:
        """Start one process per entry of `role_sets` at once; return them once all are ready."""
        started = [self._launch(roles, handlers) for roles in role_sets]
        self.servers.extend(started)
        for server in started:
            _wait_ready(server)
        return started

    def _launch(self, roles: str, handlers: Sequence[str]) -> Server:
        port = free_port()
        log = self.tmp_path / f"{roles.replace(',', '-')}-{port}.log"
        cmd = [sys.executable, "-m", "treadle.cli", "serve", "--roles", roles, "--port", str(port)]
        for module in handlers:
            cmd += ["--handlers", module]
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return Server(proc, f"http://127.0.0.1:{port}", log)

    def logs(self) -> str:
        """Every process's log tail, for a failure message."""
        return "\n".join(f"--- {s.log.name}\n{s.tail(30)}" for s in self.servers)

    def stop(self) -> list[int]:
        """SIGTERM every process at once (they drain together), and return their exit codes."""
        for server in self.servers:
            server.http.close()
            if server.proc.poll() is None:
                server.proc.send_signal(signal.SIGTERM)
        return [_reap(server) for server in self.servers]


def _reap(server: Server) -> int:
    """Wait for a process told to stop; kill it if it has not drained in 30s."""
    try:
        return server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()
        return server.proc.returncode


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"treadle serve exited with {server.proc.returncode}:\n{server.tail()}")
        try:
            if server.http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    pytest.fail(f"treadle serve not ready after {READY_SECONDS}s:\n{server.tail()}")


@contextmanager
def cluster_on(tmp_path: Path, database_url: str, env: Mapping[str, str]) -> Iterator[Cluster]:
    """A migrated cluster on `database_url`; every process is stopped at the end."""
    cluster = Cluster(tmp_path, database_url, env)
    cluster.migrate()
    try:
        yield cluster
    finally:
        cluster.stop()
        delete_namespace_of(env)
