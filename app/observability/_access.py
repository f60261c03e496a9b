"""HTTP access lines, in place of uvicorn's: one JSON line per request, polling at debug.

uvicorn's access log cannot tell the dashboard's polling and the Prometheus scrape (81% of
a quiet install's lines) from a caller's request, and its records carry an ANSI-coloured
copy of the message. This middleware sees the request's headers, so each line says what it
is: `http request` with method, path, status and duration, at info; at debug for a
successful `GET` of `/metrics`, `/healthz` or `/readyz` (scrapes and probes) or one the
browser marks as made by a page of this origin (`Sec-Fetch-Site: same-origin`: the
dashboard polling `/v1`, or loading its files). Failures are always at info.

The line is written when the response starts, from inside the app's call (as uvicorn's
was), so it carries the request's trace and log context.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from treadle.observability._logging import get_logger

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCESS_LOGGER = "treadle.access"
"""The logger of the access lines (`log.quiet_loggers` can hold it at warning)."""

_QUIET_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
_QUIET_METHODS = frozenset({"GET", "HEAD"})

log = get_logger(ACCESS_LOGGER)


def access_logged(app: ASGIApp) -> ASGIApp:
    """`app`, writing one access line per HTTP request (give uvicorn `access_log=False`)."""

    async def logged(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_and_log(message: Message) -> None:
            if message["type"] == "http.response.start":
                _log_request(scope, int(message["status"]), time.perf_counter() - started)
            await send(message)

        await app(scope, receive, send_and_log)

    return logged


def access_level(method: str, path: str, status: int, headers: dict[bytes, bytes]) -> int:
    """debug for polling (scrapes, probes, the dashboard's own reads) that succeeded, else
    info."""
    if status >= 400 or method not in _QUIET_METHODS:
        return logging.INFO
    if path in _QUIET_PATHS or headers.get(b"sec-fetch-site") == b"same-origin":
        return logging.DEBUG
    return logging.INFO


def _log_request(scope: Scope, status: int, seconds: float) -> None:
    method = str(scope.get("method", "GET"))
    path = str(scope.get("path", ""))
    headers = {bytes(k).lower(): bytes(v) for k, v in scope.get("headers", ())}
    level = access_level(method, path, status, headers)
    if not log.isEnabledFor(level):
        return
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    client = scope.get("client")
    facts: dict[str, Any] = {
        "http_method": method,
        "http_path": path,
        "http_status": status,
        "duration_ms": round(seconds * 1000, 1),
    }
    if query:
        facts["http_query"] = query
    if client:
        facts["client"] = f"{client[0]}:{client[1]}"
    log.log(level, "http request", **facts)
