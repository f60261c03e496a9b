"""Wiring: build an engine from settings, and serve its roles in one process.

`build` is the one place ports meet adapters; it makes no globals, so a test builds as
many engines as it likes. `serve` runs the selected roles in one task group until
SIGINT/SIGTERM, then stops them gracefully.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

import anyio
import anyio.abc
import uvicorn

from app.config import ConfigError, Settings
from app.domain.auth_policy import is_loopback, serve_refusal
from app.domain.errors import TreadleError
from app.modules.orchestrator import Orchestrator, Relay, RunEngine, ScheduleService
from app.modules.worker import HandlerRegistry, HttpExecutor, SyncThreads, Worker
from app.observability import Telemetry, get_logger
from app.ports import Clock, HealthCheck, StateStore, Transport
from app.serving.operations import operations_app
from app.store import StoreUnavailable, api_key_store, build_store
from app.transports import build_transport
from app.transports._connect import connect_with_retries
from app.transports._errors import TransportUnavailable

log = get_logger(__name__)

ROLES = frozenset({"api", "orchestrator", "worker"})


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class DatabaseHealth:
    """Ready when the database answers."""

    name = "database"

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def check(self) -> None:
        with anyio.fail_after(5):
            await self._store.ping()


class MigrationsHealth:
    """Ready when the schema is at the newest migration this code knows."""

    name = "migrations"

    # Asking alembic costs a round trip and a script scan (over a second on a loaded host);
    # a current schema stays current, so a positive answer is reused for a while.
    REUSE_SECONDS = 60.0

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._current_until = 0.0

    async def check(self) -> None:
        if anyio.current_time() < self._current_until:
            return
        if not await self._store.schema_is_current():
            raise SchemaNotCurrent()
        self._current_until = anyio.current_time() + self.REUSE_SECONDS


class SchemaNotCurrent(TreadleError):
    """The database schema is behind (or ahead of) this code's migrations."""

    def __init__(self) -> None:
        super().__init__("the schema is not at the newest migration; run `treadle migrate`")


class RolesHealth:
    """Ready once every role this process serves has started."""

    name = "roles"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def check(self) -> None:
        if self._engine.draining:
            raise RolesStopping()
        waiting = sorted(self._engine.roles - self._engine.started_roles)
        if waiting:
            raise RolesNotStarted(waiting)


class RolesStopping(TreadleError):
    """The process got SIGTERM/SIGINT: load balancers must stop sending it work."""

    def __init__(self) -> None:
        super().__init__("stopping: draining in-flight work")


class RolesNotStarted(TreadleError):
    """Some roles of this process have not started yet."""

    def __init__(self, roles: Sequence[str]) -> None:
        self.roles = list(roles)
        super().__init__(f"not started yet: {', '.join(roles)}")


class TransportHealth:
    """Ready while the transport is connected (the port has no ping of its own)."""

    name = "transport"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def check(self) -> None:
        if not self._engine.transport_connected:
            raise TransportUnavailable(self._engine.settings.transport.kind, "not connected")


class SyncThreadsHealth:
    """Ready while a sync handler can get a thread: `worker.max_sync_threads` is not all
    held (by hung handlers, most likely), so the worker still takes work."""

    name = "sync_threads"

    def __init__(self, threads: SyncThreads) -> None:
        self._threads = threads

    async def check(self) -> None:
        self._threads.check()


def _source(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


class Engine:
    """One engine's ports and roles, built from settings by `build`."""

    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        transport: Transport,
        registry: HandlerRegistry,
        clock: Clock,
        *,
        roles: Collection[str] = ROLES,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.registry = registry
        self.clock = clock
        self.roles = frozenset(roles)
        self.started_roles: set[str] = set()
        self.draining = False
        """Set on SIGTERM before anything stops, so /readyz answers 503 while draining."""
        self.telemetry = telemetry or Telemetry.from_settings(settings, _role_label(roles))
        self.relay = Relay(store, transport, telemetry=self.telemetry)
        self.run_engine = RunEngine(
            store,
            self.relay,
            clock,
            settings.orchestrator,
            source=_source("orchestrator"),
            telemetry=self.telemetry,
            limits=settings.limits,
        )
        self.transport_connected = False
        self._http: HttpExecutor | None = None
        # The engine's, not one worker's: threads outlive attempts, and readiness reads it.
        self.sync_threads = SyncThreads(settings.worker.max_sync_threads, self.telemetry.metrics)

    def orchestrator(self) -> Orchestrator:
        """The orchestrator role, sharing the run engine (and its timer alarm)."""
        return Orchestrator(
            self.store,
            self.transport,
            self.settings.orchestrator,
            self.clock,
            source=_source("orchestrator"),
            run_engine=self.run_engine,
            transient=(StoreUnavailable,),
            telemetry=self.telemetry,
            gauge_interval_seconds=self.settings.metrics.gauge_interval_seconds,
        )

    def worker(self) -> Worker:
        """The worker role, running this engine's registered handlers."""
        return Worker(
            self.transport,
            self.registry,
            self.settings.worker,
            self.clock,
            _source("worker"),
            telemetry=self.telemetry,
            http=self._http_executor(),
            max_deliveries=self.settings.transport.max_deliveries,
            max_output_bytes=self.settings.limits.max_output_bytes,
            sync_threads=self.sync_threads,
            deliveries=None if self.transport.COUNTS_LOST_DELIVERIES else self.store,
        )

    def _http_executor(self) -> HttpExecutor:
        # One per engine: its circuit gauge registers once in the engine's registry.
        if self._http is None:
            self._http = HttpExecutor.from_settings(self.settings.http, self.telemetry)
        return self._http

    def health_checks(self) -> list[HealthCheck]:
        """What /readyz asks: database, schema, broker, this process's roles, and with
        the worker role whether sync handlers can still get a thread."""
        checks: list[HealthCheck] = [
            DatabaseHealth(self.store),
            MigrationsHealth(self.store),
            TransportHealth(self),
            RolesHealth(self),
        ]
        if "worker" in self.roles:
            checks.append(SyncThreadsHealth(self.sync_threads))
        return checks

    async def connect(self) -> None:
        """Connect the transport, waiting for a broker that is still starting.

        The store connects lazily. Raises `BrokerUnreachable` (naming the URL) once
        `transport.connect_timeout_seconds` have passed without a connection.
        """
        await connect_with_retries(
            self.transport, retry_seconds=self.settings.transport.connect_timeout_seconds
        )
        self.transport_connected = True

    async def close(self) -> None:
        """Close the transport and the store's connections."""
        self.transport_connected = False
        with anyio.CancelScope(shield=True):
            try:
                await self.transport.close()
            finally:
                await self.store.close()
                self.telemetry.close()


def build(
    settings: Settings,
    *,
    handler_modules: Sequence[str] = (),
    clock: Clock | None = None,
    roles: Collection[str] = ROLES,
    telemetry: Telemetry | None = None,
) -> Engine:
    """An engine whose ports are the adapters `settings` names (nothing connected yet).

    `roles` are the ones this process serves (they tag its telemetry and readiness);
    `telemetry` defaults to a fresh registry and the tracer the `OTEL_*` variables ask for.
    """
    modules = list(dict.fromkeys([*settings.worker.handlers, *handler_modules]))
    return Engine(
        settings,
        build_store(settings.database),
        build_transport(settings.transport),
        HandlerRegistry.from_modules(modules),
        clock or SystemClock(),
        roles=roles,
        telemetry=telemetry,
    )


def _role_label(roles: Collection[str]) -> str:
    return ",".join(sorted(roles))


async def migrate(settings: Settings) -> None:
    """Bring the database schema to the newest migration."""
    store = build_store(settings.database)
    try:
        await store.migrate()
    finally:
        await store.close()


def migrates_on_start(settings: Settings) -> bool:
    """Whether `serve` (and `treadle keys`) migrate first: by default on SQLite only."""
    wanted = settings.database.migrate_on_start
    if wanted is None:
        return settings.database.url.startswith("sqlite")
    return wanted


async def serve(
    settings: Settings,
    *,
    roles: set[str],
    handler_modules: Sequence[str] = (),
    on_ready: Callable[[Engine], Awaitable[None] | None] | None = None,
) -> None:
    """Run `roles` until SIGINT/SIGTERM, then stop them within the drain period."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown roles {sorted(unknown)}; choose from {sorted(ROLES)}")
    engine = build(settings, handler_modules=handler_modules, roles=roles)
    if migrates_on_start(settings):
        await engine.store.migrate()
    if "api" in roles:
        await _refuse_open_listen(engine)
    await engine.connect()
    try:
        async with anyio.create_task_group() as tg:
            stop = await _start_roles(engine, roles, tg)
            tg.start_soon(_stop_on_signal, engine, stop)
            if on_ready is not None:
                result = on_ready(engine)
                if result is not None:
                    await result
    finally:
        await engine.close()


async def _start_roles(
    engine: Engine, roles: set[str], tg: anyio.abc.TaskGroup
) -> Callable[[], Awaitable[None]]:
    """Start each role; returns the function that asks them all to stop."""
    scopes: list[anyio.CancelScope] = []
    servers: list[_Server] = []
    running: list[anyio.Event] = []
    # The worker starts first: with the in-process transport, the orchestrator's start-up
    # recovery re-dispatches to it.
    if "worker" in roles:
        tg.start_soon(_in_scope, engine.worker().run, scopes, running)
        engine.started_roles.add("worker")
    if "orchestrator" in roles:
        tg.start_soon(_in_scope, engine.orchestrator().run, scopes, running)
        engine.started_roles.add("orchestrator")
    # Every process listens: the whole API with the api role, else /healthz, /readyz and
    # /metrics alone, on the same host and port (one probe and scrape config per role).
    server = _api_server(engine) if "api" in roles else _operations_server(engine)
    servers.append(server)
    tg.start_soon(server.serve)
    if "api" in roles:
        engine.started_roles.add("api")

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
    run: Callable[[], Awaitable[None]],
    scopes: list[anyio.CancelScope],
    running: list[anyio.Event],
) -> None:
    done = anyio.Event()
    running.append(done)
    try:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            await run()
    finally:
        done.set()


async def _stop_on_signal(engine: Engine, stop: Callable[[], Awaitable[None]]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("stopping", signal=signal.Signals(signum).name)
            await _drain(engine, stop)
            return


async def _drain(engine: Engine, stop: Callable[[], Awaitable[None]]) -> None:
    """Readiness turns 503 first, so no new work is routed here while draining; the roles
    stop `api.shutdown_delay_seconds` later (time for a load balancer to see the 503)."""
    engine.draining = True
    await anyio.sleep(engine.settings.api.shutdown_delay_seconds)
    await stop()


class InsecureListen(ConfigError):
    """The API would listen off loopback with no way to authenticate callers."""

    def __init__(self, host: str, reason: str) -> None:
        self.host = host
        super().__init__("api.host", reason)


async def _refuse_open_listen(engine: Engine) -> None:
    """Raise `InsecureListen` rather than serve the API off loopback without keys."""
    settings = engine.settings
    if is_loopback(settings.api.host) or settings.auth.allow_insecure:
        return
    active = await api_key_store(engine.store).count_active_api_keys()
    reason = serve_refusal(settings.auth, host=settings.api.host, active_keys=active)
    if reason is not None:
        await engine.store.close()
        raise InsecureListen(settings.api.host, reason)


def _api_server(engine: Engine) -> _Server:
    from app.modules.api import Authenticator, create_app  # noqa: PLC0415 -- api role only

    app = create_app(
        run_control=engine.run_engine,
        workflows=engine.store,
        runs=engine.store,
        health=engine.health_checks(),
        settings=engine.settings.api,
        limits=engine.settings.limits,
        telemetry=engine.telemetry,
        schedules=ScheduleService(engine.store, engine.clock),
        # Ends are announced only where this process decides them.
        run_ends=engine.run_engine.finishes if "orchestrator" in engine.roles else None,
        auth=Authenticator(
            api_key_store(engine.store),
            engine.settings.auth,
            loopback=is_loopback(engine.settings.api.host),
            allowed_hosts=engine.settings.api.allowed_hosts,
        ),
    )
    return _serving(engine, app)


def _operations_server(engine: Engine) -> _Server:
    return _serving(engine, operations_app(engine.telemetry.metrics, engine.health_checks()))


KEEP_ALIVE_SECONDS = 65


def _serving(engine: Engine, app: Callable[..., Awaitable[None]]) -> _Server:
    config = uvicorn.Config(
        app,
        host=engine.settings.api.host,
        port=engine.settings.api.port,
        log_config=None,
        lifespan="on",
        # Longer than clients keep idle connections (httpx 5 s, load balancers 60 s): at
        # uvicorn's own 5 s a client could send on a connection the server was closing.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return _Server(config)


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve`."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would install its own handlers and re-raise the signal after shutting
        # down, killing the process before the other roles have drained.
        yield
