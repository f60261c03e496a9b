"""ASGI pieces: per-request span, log context and metrics; a bare /metrics app.

Plain ASGI (no litestar import), so the same middleware wraps any app and the metrics
app can be served by uvicorn on its own port in a process without the api role.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from treadle.observability._logging import bind_context
from treadle.observability._metrics import Metrics
from treadle.observability._tracing import Tracing

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED_ROUTE = "unmatched"
"""The route label of a request no route template matched (bounded, unlike its path)."""


class TelemetryMiddleware:
    """A span, a request id in the log context, and HTTP metrics for each request.

    The route label is litestar's `path_template` (set on the scope by its router, read
    after the app ran), so `/v1/runs/{run_id}` is one series however many runs exist.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, tracing: Tracing) -> None:
        self.app = app
        self.metrics = metrics
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET"))
        status = 500  # what the client sees if the app dies before starting a response

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        with (
            self.tracing.span(
                f"HTTP {method}",
                traceparent=_header(scope, b"traceparent"),
                kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": scope.get("path")},
            ) as span,
            bind_context(http_method=method, http_path=scope.get("path")),
        ):
            try:
                await self.app(scope, receive, send_and_note)
            finally:
                route = str(scope.get("path_template") or UNMATCHED_ROUTE)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
                self.metrics.http_request(route, method, status, time.perf_counter() - started)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def metrics_app(metrics: Metrics) -> ASGIApp:
    """An ASGI app answering `GET /metrics` (and `/healthz`) for worker-only processes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope.get("path", "")
        if path == "/metrics":
            body, content_type = metrics.render()
            await _respond(send, 200, body, content_type)
        elif path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}', "application/json")
        else:
            await _respond(send, 404, b"not found\n", "text/plain; charset=utf-8")

    return app


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
