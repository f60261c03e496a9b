"""Serving: run a built process's roles in one task group until SIGINT/SIGTERM, then
drain them gracefully. Every process listens on `api.host:api.port`: the whole API with
the api role, else the operations-only app (`treadle.serving.operations`).
"""

from __future__ import annotations

import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

import anyio
import anyio.abc
import uvicorn
from anyio.abc import TaskStatus

from treadle.config import ConfigError, Settings
from treadle.domain.auth_policy import is_loopback, serve_refusal
from treadle.modules.orchestrator import ScheduleService
from treadle.observability import access_logged, get_logger
from treadle.serving._access import MetricsAccess
from treadle.serving.bootstrap import bootstrap_token, ensure_bootstrap_key
from treadle.serving.operations import operations_app
from treadle.store import MEMORY_URL, api_key_store
from treadle.wiring import ROLES, Process, build, migrates_on_start

log = get_logger(__name__)


async def serve(
    settings: Settings,
    *,
    roles: set[str],
    handler_modules: Sequence[str] = (),
    on_ready: Callable[[Process], Awaitable[None] | None] | None = None,
) -> None:
    """Run `roles` until SIGINT/SIGTERM, then stop them within the drain period."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {sorted(ROLES)}")
    _refuse_split_memory_store(settings, roles)
    # Read and checked before anything connects: a bad key is a start-up error.
    first_key = bootstrap_token(settings.auth) if "api" in roles else None
    process = build(settings, handler_modules=handler_modules, roles=roles)
    if migrates_on_start(settings):
        await process.store.migrate()
    if first_key is not None:
        await _store_bootstrap_key(process, *first_key)
    if "api" in roles:
        await _refuse_open_listen(process)
    await process.connect()
    try:
        async with anyio.create_task_group() as tg:
            stop = await _start_roles(process, roles, tg)
            tg.start_soon(_stop_on_signal, process, stop)
            if on_ready is not None:
                result = on_ready(process)
                if result is not None:
                    await result
    finally:
        await process.close()


def _refuse_split_memory_store(settings: Settings, roles: Collection[str]) -> None:
    """Raise `ConfigError` for an api or an orchestrator alone on memory://: the store
    lives in one process, so the other role elsewhere could never see its runs."""
    if settings.database.url == MEMORY_URL and len({"api", "orchestrator"} & set(roles)) == 1:
        reason = "memory:// lives in one process: serve the api and orchestrator roles together"
        raise ConfigError("database.url", reason)


async def _start_roles(
    process: Process, roles: set[str], tg: anyio.abc.TaskGroup
) -> Callable[[], Awaitable[None]]:
    """Start each role; returns the function that asks them all to stop."""
    scopes: list[anyio.CancelScope] = []
    servers: list[_Server] = []
    running: list[anyio.Event] = []
    # The orchestrator starts first and alone: with the in-process transport its start-up
    # recovery re-dispatches what the last process left (queued until the worker takes
    # it), and nothing this process decides may be there to be taken for the dead one's.
    if "orchestrator" in roles:
        await tg.start(_in_scope, _reports_start(process.orchestrator().run), scopes, running)
        process.started_roles.add("orchestrator")
    if "worker" in roles:
        tg.start_soon(_in_scope, _starts_at_once(process.worker().run), scopes, running)
        process.started_roles.add("worker")
    # Every process listens: the whole API with the api role, else /healthz, /readyz and
    # /metrics alone, on the same host and port (one probe and scrape config per role).
    server = _api_server(process) if "api" in roles else _operations_server(process)
    servers.append(server)
    tg.start_soon(server.serve)
    if "api" in roles:
        process.started_roles.add("api")

    async def stop() -> None:
        for scope in scopes:
            scope.cancel()  # the worker drains in-flight attempts as it is cancelled
        for done in running:
            await done.wait()
        # The HTTP server goes last: /readyz keeps answering 503 (not "connection
        # refused") while the roles drain, and requests in flight get their answers.
        for server in servers:
            server.should_exit = True

    return stop


async def _in_scope(
    run: Callable[[TaskStatus[None]], Awaitable[None]],
    scopes: list[anyio.CancelScope],
    running: list[anyio.Event],
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Run a role in a cancel scope of its own (see `stop`), handing it `task_status`."""
    done = anyio.Event()
    running.append(done)
    try:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await run(task_status)
    finally:
        done.set()


def _reports_start(
    run: Callable[..., Awaitable[None]],
) -> Callable[[TaskStatus[None]], Awaitable[None]]:
    """`run` reporting its start through `task_status` (`TaskGroup.start`)."""

    async def started(task_status: TaskStatus[None]) -> None:
        await run(task_status=task_status)

    return started


def _starts_at_once(
    run: Callable[[], Awaitable[None]],
) -> Callable[[TaskStatus[None]], Awaitable[None]]:
    """`run`, counted as started as soon as it is called."""

    async def started(task_status: TaskStatus[None]) -> None:
        task_status.started()
        await run()

    return started


async def _stop_on_signal(process: Process, stop: Callable[[], Awaitable[None]]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            await _drain(process, stop)
            return


async def _drain(process: Process, stop: Callable[[], Awaitable[None]]) -> None:
    """Readiness turns 503 first, so no new work is routed here while draining; the roles
    stop `api.shutdown_delay_seconds` later (time for a load balancer to see the 503)."""
    process.draining = True
    await anyio.sleep(process.settings.api.shutdown_delay_seconds)
    await stop()


class InsecureListen(ConfigError):
    """The API would listen off loopback with no way to authenticate callers."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        super().__init__("api.host", reason)


async def _refuse_open_listen(process: Process) -> None:
    """Raise `InsecureListen` rather than serve the API off loopback without keys."""
    settings = process.settings
    if is_loopback(settings.api.host) or settings.auth.allow_insecure:
        return
    active = await api_key_store(process.store).count_active_api_keys()
    reason = serve_refusal(settings.auth, host=settings.api.host, active_keys=active)
    if reason is not None:
        await process.store.close()
        raise InsecureListen(settings.api.host, reason)


async def _store_bootstrap_key(process: Process, setting: str, token: str) -> None:
    try:
        await ensure_bootstrap_key(
            api_key_store(process.store), setting, token, process.clock.now()
        )
    except ConfigError:
        await process.store.close()
        raise


def _api_server(process: Process) -> _Server:
    server = _serving(process, _api_app(process))
    server.on_started = lambda: _announce(process.settings.api.host, server.port_bound)
    return server


def _announce(host: str, port: int) -> None:
    """Say where to point a browser, once the API answers there."""
    base = f"http://{_browsable(host)}:{port}"
    log.info(
        f"dashboard at {base}/ui",  # in the message: on a terminal it is what a person reads
        dashboard_url=f"{base}/ui",
        docs_url=f"{base}/schema",
        api_url=f"{base}/v1",
    )


def _browsable(host: str) -> str:
    """An address a browser on this machine can open for a server bound to `host`."""
    if host in ("0.0.0.0", ""):  # noqa: S104 -- a comparison, not a bind
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _api_app(process: Process) -> Callable[..., Awaitable[None]]:
    from treadle.modules.api import Authenticator, create_app  # noqa: PLC0415 -- api role only

    return create_app(
        run_control=process.run_service,
        workflows=process.store,
        runs=process.store,
        health=process.health_checks(),
        settings=process.settings.api,
        limits=process.settings.limits,
        ui=process.settings.ui,
        telemetry=process.telemetry,
        schedules=ScheduleService(process.store, process.clock, runs=process.run_service),
        workers=process.store,
        worker_report_seconds=process.settings.worker.report_interval_seconds,
        # Ends are announced only where this process decides them.
        run_ends=process.run_service.finishes if "orchestrator" in process.roles else None,
        auth=Authenticator(
            api_key_store(process.store),
            process.settings.auth,
            loopback=is_loopback(process.settings.api.host),
            allowed_hosts=process.settings.api.allowed_hosts,
        ),
    )


def _operations_server(process: Process) -> _Server:
    access = MetricsAccess(
        api_key_store(process.store),
        process.settings.auth,
        loopback=is_loopback(process.settings.api.host),
    )
    app = operations_app(process.telemetry.metrics, process.health_checks(), access)
    return _serving(process, app)


KEEP_ALIVE_SECONDS = 65


def _serving(process: Process, app: Callable[..., Awaitable[None]]) -> _Server:
    config = uvicorn.Config(
        access_logged(app),
        host=process.settings.api.host,
        port=process.settings.api.port,
        log_config=None,
        access_log=False,  # access_logged writes them, with polling at debug
        lifespan="on",
        # Longer than clients keep idle connections (httpx 5 s, load balancers 60 s): at
        # uvicorn's own 5 s a client could send on a connection the server was closing.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`, and calls `on_started`
    once it listens."""

    on_started: Callable[[], None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()

    @property
    def port_bound(self) -> int:
        """The port it listens on (the configured one, or the kernel's pick for 0)."""
        for server in self.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would install its own handlers and re-raise the signal after shutting
        # down, killing the process before the other roles have drained.
        yield
