"""Operational routes: liveness, readiness, metrics."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from litestar import Response, get
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from app.modules.api._routes import ServicesDep
from app.modules.api._schemas import Health, Readiness
from app.ports import HealthCheck

READINESS_TIMEOUT_SECONDS = 2.0
"""Each check gets this long; a load balancer polls often and must not pile up."""


@get("/healthz", summary="Liveness: the process answers", tags=["operations"])
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    summary="Readiness: every dependency answered (503 otherwise)",
    tags=["operations"],
)
async def readyz(services: ServicesDep) -> Response[Readiness]:
    checks = await run_checks(services.health, READINESS_TIMEOUT_SECONDS)
    ready = all(result == "ok" for result in checks.values())
    body = Readiness(status="ok" if ready else "unavailable", checks=checks)
    return Response(body, status_code=200 if ready else 503)


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


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    media_type=CONTENT_TYPE_PLAIN_0_0_4,
)
async def metrics() -> Response[bytes]:
    return Response(generate_latest(), media_type=CONTENT_TYPE_PLAIN_0_0_4)
