"""The image's HEALTHCHECK probes the configured port, on loopback for a wildcard bind."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ports import free_port
from treadle.config import ApiSettings, Settings
from treadle.serving.healthcheck import healthz_url


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:9123/healthz"),
        ("::", "http://[::1]:9123/healthz"),
        ("127.0.0.1", "http://127.0.0.1:9123/healthz"),
        ("::1", "http://[::1]:9123/healthz"),
        ("api.internal", "http://api.internal:9123/healthz"),
    ],
)
def test_the_probe_url_follows_the_configured_host_and_port(host: str, url: str) -> None:
    """A wildcard bind is probed on loopback; any other host as configured."""
    assert healthz_url(Settings(api=ApiSettings(host=host, port=9123))) == url


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def healthz_port() -> Iterator[int]:
    """A /healthz answering 200 on a loopback port the kernel picks."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _probe(port: int) -> subprocess.CompletedProcess[str]:
    env = {"TREADLE_API__HOST": "0.0.0.0", "TREADLE_API__PORT": str(port), "PATH": ""}
    return subprocess.run(
        [sys.executable, "-m", "treadle.serving.healthcheck"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_probe_passes_on_the_port_set_in_the_environment(healthz_port: int) -> None:
    """TREADLE_API__PORT moves the probe with the server: it exits 0 there."""
    done = _probe(healthz_port)
    assert done.returncode == 0, done.stderr


def test_the_probe_fails_where_nothing_answers() -> None:
    """A port with no server fails the probe with the URL on stderr."""
    done = _probe(free_port())
    assert done.returncode == 1
    assert "/healthz" in done.stderr
