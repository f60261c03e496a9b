"""Readiness checks, and the operations-only HTTP app of a process without the api role.

Every `treadle serve` listens on `api.host:api.port`: with the api role it serves the
whole API; without it, only `/healthz`, `/readyz` and `/metrics`, so one probe and one
scrape config fit every role: `/metrics` asks for the same key as the api's
(`treadle.serving._access`). Plain ASGI: a worker never loads litestar.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import msgspec

from treadle.observability import Metrics, metrics_app
from treadle.observability._asgi import ASGIApp, Receive, Scope, Send
from treadle.ports import HealthCheck
from treadle.serving._access import MetricsAccess

READINESS_TIMEOUT_SECONDS = 2.0
"""Each check gets this long; a load balancer polls often and must not pile up."""


async def run_checks(health: Sequence[HealthCheck], seconds_each: float) -> dict[str, str]:
    """Run every check concurrently; each yields "ok" or the reason it failed."""
    results: dict[str, str] = {}

    async def run_one(check: HealthCheck) -> None:
        results[check.name] = await _check_reason(check, seconds_each)

    async with anyio.create_task_group() as tg:
        for check in health:
            tg.start_soon(run_one, check)
    return {check.name: results[check.name] for check in health}


async def _check_reason(check: HealthCheck, seconds: float) -> str:
    try:
        with anyio.fail_after(seconds):
            await check.check()
    except TimeoutError:
        return f"timed out after {seconds:g}s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its reason
        return str(exc) or type(exc).__name__
    return "ok"


def operations_app(
    metrics: Metrics, health: Sequence[HealthCheck], access: MetricsAccess | None = None
) -> ASGIApp:
    """`/readyz` (503 with the failed checks), `/healthz`, and `/metrics` for whom `access`
    lets in (everyone without it)."""
    others = metrics_app(metrics)
    checks = tuple(health)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path == "/readyz":
            results = await run_checks(checks, READINESS_TIMEOUT_SECONDS)
            ready = all(result == "ok" for result in results.values())
            body = {"status": "ok" if ready else "unavailable", "checks": results}
            await _json(send, 200 if ready else 503, msgspec.json.encode(body))
            return
        if path == "/metrics" and access is not None:
            refusal = await access.refusal(_authorization(scope))
            if refusal is not None:
                extra = [(b"www-authenticate", b'Bearer realm="treadle"')]
                headers = extra if refusal.status == 401 else []
                await _json(send, refusal.status, refusal.body(), PROBLEM, headers)
                return
        await others(scope, receive, send)

    return app


PROBLEM = b"application/problem+json"


def _authorization(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"authorization":
            return bytes(value).decode("latin-1")
    return None


async def _json(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"application/json",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", b"%d" % len(body)), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
