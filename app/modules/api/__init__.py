"""The HTTP API (litestar): `create_app` wires the routes to the engine's ports."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from treadle.api_types import (
    HeartbeatBody,
    HistoryPage,
    Problem,
    RunBody,
    RunCountsBody,
    RunPage,
    RunSummaryBody,
    ScheduleBody,
    SchedulePage,
    TaskBody,
    WorkflowDetail,
    WorkflowPage,
    WorkflowRef,
    WorkflowSummary,
    WorkflowVersion,
    WorkflowVersionInfo,
)
from treadle.config import ApiSettings, LimitsSettings, UiSettings
from treadle.modules.api._auth import Authenticator, declare_security
from treadle.modules.api._bounds import json_depth_check, refuse_nul
from treadle.modules.api._docs import SCHEMA_PATH, docs_render_plugins
from treadle.modules.api._errors import problem_response
from treadle.modules.api._ops import healthz, metrics, readyz
from treadle.modules.api._routes import RunController, Services, WorkflowController
from treadle.modules.api._schedules import ScheduleController
from treadle.modules.api._workers import WorkersController
from treadle.modules.ui import ui_routes
from treadle.observability import Telemetry
from treadle.ports import (
    HealthCheck,
    RunControl,
    RunEnds,
    RunStore,
    ScheduleControl,
    WorkerRegistry,
    WorkflowStore,
)

# The response bodies (from `treadle.api_types`) are public: the typed client decodes into them.
__all__ = [
    "Authenticator",
    "HeartbeatBody",
    "HistoryPage",
    "Problem",
    "RunBody",
    "RunCountsBody",
    "RunPage",
    "RunSummaryBody",
    "ScheduleBody",
    "SchedulePage",
    "TaskBody",
    "WorkflowDetail",
    "WorkflowPage",
    "WorkflowRef",
    "WorkflowSummary",
    "WorkflowVersion",
    "WorkflowVersionInfo",
    "create_app",
]

API_VERSION = "1.0.0"


def create_app(
    *,
    run_control: RunControl,
    workflows: WorkflowStore,
    runs: RunStore,
    health: Sequence[HealthCheck],
    settings: ApiSettings,
    telemetry: Telemetry | None = None,
    schedules: ScheduleControl | None = None,
    auth: Authenticator | None = None,
    run_ends: RunEnds | None = None,
    limits: LimitsSettings | None = None,
    ui: UiSettings | None = None,
    workers: WorkerRegistry | None = None,
    worker_report_seconds: float = 5.0,
) -> Litestar:
    """The litestar application serving `/v1`, the operational routes and `/schema`.

    `telemetry` (the engine's) traces and measures every request and backs `/metrics`;
    without it the app measures into a registry of its own and traces nothing.
    `auth` checks API keys on every route that needs a scope; without it all are open.
    `limits` (the engine's `[limits]`) bounds what one answer inlines; `ui` (`[ui]`) is
    what the dashboard reads of the config.
    """
    telemetry = telemetry or Telemetry.off("api")
    services = Services(
        run_control=run_control,
        workflows=workflows,
        runs=runs,
        health=tuple(health),
        settings=settings,
        telemetry=telemetry,
        schedules=schedules,
        run_ends=run_ends,
        limits=limits or LimitsSettings(),
        workers=workers,
        worker_report_seconds=worker_report_seconds,
    )

    async def provide_services() -> Services:
        return services

    app = Litestar(
        route_handlers=[
            WorkflowController,
            RunController,
            ScheduleController,
            WorkersController,
            healthz,
            readyz,
            metrics,
            *ui_routes(ui),
        ],
        dependencies={"services": Provide(provide_services, use_cache=True)},
        guards=[auth.guard] if auth is not None else [],
        # Plain ASGI middleware; litestar's scope types are narrower aliases of the same.
        middleware=[telemetry.asgi_middleware, refuse_nul],  # type: ignore[list-item]
        before_request=json_depth_check(services.limits.max_json_depth),
        # Logging is the process's (configure_logging): litestar's default dictConfig
        # would give uvicorn's loggers handlers of their own, in a plain-text format.
        logging_config=None,
        exception_handlers={Exception: problem_response},
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="Treadle",
            version=API_VERSION,
            description="Durable workflow orchestration: register workflows, start and "
            "steer runs. Errors are application/problem+json (RFC 9457).",
            path=SCHEMA_PATH,
            render_plugins=docs_render_plugins(SCHEMA_PATH),  # served offline: no CDN
        ),
    )
    # The document says where a key is needed whether or not this server enforces keys now
    # (in auto mode that changes when the first key is created).
    declare_security(app.openapi_schema, open_metrics=settings_open_metrics(auth))
    return app


def settings_open_metrics(auth: Authenticator | None) -> bool:
    """Whether /metrics is served without a key."""
    return auth is not None and auth.open_metrics
