"""A tiny threaded HTTP server on 127.0.0.1 that http-task tests call.

Routes: `/echo` answers the request back as JSON (`/echo/<code>`: its auth headers and
body, with that status); `/status/<code>`; `/flaky/<key>?fail=N`
answers 503 N times per key, then 200; `/slow?seconds=S`; `/big?bytes=N`; `/text`;
`/redirect?to=URL` (a 302; `/redirect/<code>?to=URL` that status). Every request is
recorded, so a test can assert what arrived (or that nothing did).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass(frozen=True)
class Received:
    """One request the server got."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


class EchoServer:
    """The running server: its base URL and what it received."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.received: list[Received] = []
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def count(self, key: str) -> int:
        """How many times `/flaky/<key>` was called so far (thread-safe increment)."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]


class _Handler(BaseHTTPRequestHandler):
    server_version = "echo"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: pytest would show every request otherwise

    def _handle(self) -> None:
        echo: EchoServer = self.server.echo  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(parts.query)
        received = Received(self.command, parts.path, query, dict(self.headers.items()), body)
        echo.received.append(received)
        status, headers, payload = _route(echo, received)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def _route(echo: EchoServer, r: Received) -> tuple[int, dict[str, str], bytes]:
    as_json = {"content-type": "application/json"}
    if r.path == "/echo":
        body = {
            "method": r.method,
            "query": r.query,
            "headers": {k.lower(): v for k, v in r.headers.items()},
            "body": r.body.decode(),
        }
        return 200, {**as_json, "set-cookie": "session=abc"}, json.dumps(body).encode()
    if r.path.startswith("/echo/"):
        # /echo/<code>: the auth headers and body sent, short (an error message keeps only
        # the start of a body), answered with that status.
        headers = {k.lower(): v for k, v in r.headers.items()}
        sent = {k: headers.get(k) for k in ("authorization", "x-token")}
        body = json.dumps({**sent, "body": r.body.decode()}).encode()
        return int(r.path.rsplit("/", 1)[1]), as_json, body
    if r.path.startswith("/status/"):
        return int(r.path.rsplit("/", 1)[1]), as_json, b'{"error": "as asked"}'
    if r.path.startswith("/flaky/"):
        fail = int(r.query.get("fail", ["2"])[0])
        if echo.count(r.path) <= fail:
            return 503, {"content-type": "text/plain"}, b"try later"
        return 200, as_json, b'{"ok": true}'
    if r.path == "/slow":
        time.sleep(float(r.query.get("seconds", ["2"])[0]))
        return 200, as_json, b'{"slow": true}'
    if r.path == "/big":
        return 200, {"content-type": "text/plain"}, b"x" * int(r.query["bytes"][0])
    if r.path == "/redirect":
        return 302, {"location": r.query["to"][0]}, b""
    if r.path.startswith("/redirect/"):
        return int(r.path.rsplit("/", 1)[1]), {"location": r.query["to"][0]}, b""
    return 200, {"content-type": "text/plain; charset=utf-8"}, "plain text ü".encode()


@contextmanager
def echo_server() -> Iterator[EchoServer]:
    """Serve on a free loopback port for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    echo = EchoServer(server)
    server.echo = echo  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield echo
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
