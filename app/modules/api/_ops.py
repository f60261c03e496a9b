"""Operational routes: liveness, readiness, metrics."""

from __future__ import annotations

from litestar import Response, get
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from treadle.modules.api._routes import ServicesDep
from treadle.modules.api._schemas import Health, Readiness
from treadle.serving.operations import run_checks

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


@get(
    "/metrics",
    summary="Prometheus metrics",
    tags=["operations"],
    media_type=CONTENT_TYPE_PLAIN_0_0_4,
)
async def metrics(services: ServicesDep) -> Response[bytes]:
    body, content_type = services.telemetry.metrics.render()
    return Response(body, media_type=content_type)
