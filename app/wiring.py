"""Wiring: build one process's ports and roles from settings.

`build` is the one place ports meet adapters; it makes no globals, so a test builds as
many processes as it likes. Running them until SIGTERM is `treadle.serving.serve`'s job.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

import anyio

from treadle.config import Settings
from treadle.domain.errors import TreadleError
from treadle.modules.orchestrator import EventConsumer, Orchestrator, Relay, RunService
from treadle.modules.worker import HandlerRegistry, HttpExecutor, SyncThreads, Worker
from treadle.observability import Telemetry, get_logger
from treadle.ports import Clock, HealthCheck, StateStore, Transport
from treadle.store import StoreUnavailable, build_store, sql_engine
from treadle.transports import build_transport
from treadle.transports._connect import connect_with_retries
from treadle.transports._errors import TransportUnavailable

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

    def __init__(self, process: Process) -> None:
        self._process = process

    async def check(self) -> None:
        if self._process.draining:
            raise RolesStopping()
        waiting = sorted(self._process.roles - self._process.started_roles)
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

    def __init__(self, process: Process) -> None:
        self._process = process

    async def check(self) -> None:
        if not self._process.transport_connected:
            raise TransportUnavailable(self._process.settings.transport.kind, "not connected")


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


class Process:
    """One process: its ports and the roles it may serve, built from settings by `build`."""

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
        if (engine := sql_engine(store)) is not None:
            self.telemetry.trace_database(engine)
        self.relay = Relay(store, transport, telemetry=self.telemetry)
        self.run_service = RunService(
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
        # The process's, not one worker's: threads outlive attempts, and readiness reads it.
        self.sync_threads = SyncThreads(settings.worker.max_sync_threads, self.telemetry.metrics)

    def orchestrator(self) -> Orchestrator:
        """The orchestrator role, sharing the run service (and its timer alarm)."""
        return Orchestrator(
            self.store,
            self.transport,
            self.settings.orchestrator,
            self.clock,
            source=_source("orchestrator"),
            run_service=self.run_service,
            transient=(StoreUnavailable,),
            telemetry=self.telemetry,
            gauge_interval_seconds=self.settings.metrics.gauge_interval_seconds,
        )

    def worker(self) -> Worker:
        """The worker role, running this process's registered handlers."""
        worker = Worker(
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
            local_events=self._local_events(),
            eager_outbox=self.relay if self._runs_eagerly() else None,
            presence=self.store,
        )
        # The decisions of this process (orchestrator or api) hand it their dispatches.
        self.run_service.use_eager(worker.eager)
        return worker

    def _runs_eagerly(self) -> bool:
        """Whether this process's worker takes the dispatches its own decisions write: it
        decides (api or orchestrator role) and `worker.eager` is on."""
        return self.settings.worker.eager and bool({"api", "orchestrator"} & self.roles)

    def _local_events(self) -> EventConsumer | None:
        """Where this process's worker has its events decided without the broker: the
        orchestrator's way of applying them, when this process runs that role too."""
        if "orchestrator" not in self.roles or not self.settings.worker.decide_locally:
            return None
        if not self.transport.DURABLE:
            # The in-process transport's events channel is a memory queue: deciding in the
            # attempt's own task would only hold its worker slot through the commit.
            return None
        return EventConsumer(
            self.transport,
            self.run_service,
            prefetch=1,  # never consumes: only `decide_here` is used
            transient=(StoreUnavailable,),
            metrics=self.telemetry.metrics,
        )

    def _http_executor(self) -> HttpExecutor:
        # One per process: its circuit gauge registers once in the process's registry.
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
) -> Process:
    """A process whose ports are the adapters `settings` names (nothing connected yet).

    `roles` are the ones this process serves (they tag its telemetry and readiness);
    `telemetry` defaults to a fresh registry and the tracer the `OTEL_*` variables ask for.
    """
    modules = list(dict.fromkeys([*settings.worker.handlers, *handler_modules]))
    return Process(
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
