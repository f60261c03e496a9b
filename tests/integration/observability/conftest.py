"""A run across three `treadle serve` processes (api, orchestrator, worker) on PostgreSQL
and RabbitMQ, with a local OTLP/HTTP receiver collecting every span they export.

The run happens once per module; the trace and log tests each read what it left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.brokers import delete_namespace_of
from tests.e2e.conftest import ROOT, SMALL_POOL, TERMINAL, free_port

PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"]
BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
ROLES = ("api", "orchestrator", "worker")

FLAKY: dict[str, Any] = {
    "name": "obs-flaky",
    "tasks": {
        "first": {
            "handler": "e2e.flaky",
            "input": {"fail_times": 1},
            "retry": {"max_attempts": 3, "initial_interval": "100ms"},
        },
        "second": {"after": ["first"], "handler": "e2e.echo", "input": {"x": 1}},
    },
}


@pytest.fixture
def anyio_backend() -> str:
    """The in-process tests here run on asyncio only (the engine's uvicorn needs it)."""
    return "asyncio"


@dataclass(frozen=True, kw_only=True)
class Span:
    """One exported span, flattened from OTLP protobuf."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]


class OtlpReceiver:
    """A tiny OTLP/HTTP (protobuf) trace receiver on 127.0.0.1, run in a thread."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path == "/v1/traces":
                    receiver.add(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, body: bytes) -> None:
        """Decode one export request and keep its spans."""
        request = ExportTraceServiceRequest.FromString(body)
        decoded = [
            Span(
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_id=span.parent_span_id.hex(),
                name=span.name,
                kind=span.kind,
                attributes={a.key: _value(a.value) for a in span.attributes},
                resource={a.key: _value(a.value) for a in rs.resource.attributes},
            )
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]
        with self._lock:
            self.spans.extend(decoded)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(kw_only=True)
class Cluster:
    """The three processes, their log files, and the run they carried."""

    receiver: OtlpReceiver
    logs: dict[str, Path]
    ports: dict[str, int]
    run: dict[str, Any] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    readiness: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, str] = field(default_factory=dict)
    """Each role's /metrics body, scraped once the run finished."""

    def log_lines(self, role: str) -> list[str]:
        """Every non-empty line the process wrote to stdout and stderr."""
        return [line for line in self.logs[role].read_text().splitlines() if line.strip()]


def _psql(sql: str) -> None:
    subprocess.run([*PG_ADMIN, sql], check=True, capture_output=True)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database, migrated, dropped after the module."""
    name = f"treadle_obs_{uuid.uuid4().hex[:12]}"
    _psql(f"CREATE DATABASE {name}")
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "treadle.cli", "migrate"],
            cwd=ROOT,
            env={**os.environ, "TREADLE_DATABASE_URL": url},
            capture_output=True,
            text=True,
            check=False,
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        yield url
    finally:
        _psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    """Start the three roles, run FLAKY to the end over HTTP, stop them (flushing spans)."""
    receiver = OtlpReceiver()
    folder = tmp_path_factory.mktemp("obs")
    env = {
        **os.environ,
        "TREADLE_DATABASE_URL": database_url,
        "TREADLE_TRANSPORT": "rabbitmq",
        "TREADLE_BROKER_URL": BROKER_URL,
        **SMALL_POOL,
        "TREADLE_TRANSPORT__NAMESPACE": f"obs{uuid.uuid4().hex[:10]}",
        "TREADLE_LOG__FORMAT": "json",
        "TREADLE_ORCHESTRATOR__TIMER_POLL_SECONDS": "0.2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "PYTHONUNBUFFERED": "1",
    }
    for key in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        env.pop(key, None)
    ports = {role: free_port() for role in ROLES}
    logs = {role: folder / f"{role}.log" for role in ROLES}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    found = Cluster(receiver=receiver, logs=logs, ports=ports)
    try:
        for role in ROLES:
            cmd = [sys.executable, "-m", "treadle.cli", "serve", "--roles", role]
            cmd += ["--port", str(ports[role]), "--handlers", "tests.e2e.handlers"]
            with logs[role].open("wb") as out:
                procs[role] = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
                )
        for role in ROLES:
            _wait_ready(found, procs[role], role)
        found.run = _run_flaky(f"http://127.0.0.1:{ports['api']}")
        for role in ROLES:
            scraped = httpx.get(f"http://127.0.0.1:{ports[role]}/metrics", timeout=10)
            assert scraped.status_code == 200, (role, scraped.text)
            found.metrics[role] = scraped.text
    finally:
        for proc in procs.values():
            proc.terminate()
        for role, proc in procs.items():
            try:
                found.exit_codes[role] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                found.exit_codes[role] = proc.wait()
        receiver.close()
        delete_namespace_of(env)
    return found


READY_SECONDS = 120.0
"""Like the e2e cluster's: three processes compiling a fresh venv's bytecode at once on a
loaded 2-core machine took over 30 s to answer /readyz."""


def _wait_ready(cluster: Cluster, proc: subprocess.Popen[bytes], role: str) -> None:
    deadline = time.monotonic() + READY_SECONDS
    url = f"http://127.0.0.1:{cluster.ports[role]}/readyz"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{role} exited with {proc.returncode}:\n{cluster.logs[role].read_text()}")
        try:
            response = httpx.get(url, timeout=2)
            if response.status_code == 200:
                cluster.readiness[role] = response.json()
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{role} not ready after {READY_SECONDS}s:\n{cluster.logs[role].read_text()}")


def _run_flaky(base: str) -> dict[str, Any]:
    with httpx.Client(base_url=base, timeout=10) as http:
        assert http.post("/v1/workflows", json=FLAKY).status_code in (200, 201)
        started = http.post("/v1/runs", json={"workflow": "obs-flaky", "input": {}})
        assert started.status_code == 201, started.text
        run_id = started.json()["id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            run: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()
            if run["status"] in TERMINAL:
                return run
            time.sleep(0.1)
    pytest.fail(f"run {run_id} did not finish: {json.dumps(run)}")
