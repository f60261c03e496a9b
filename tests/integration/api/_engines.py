"""The API over the real engine on each store: in memory, SQLite, PostgreSQL and MariaDB.

Each use gets a database of its own (a SQLite file, a fresh PostgreSQL or MariaDB
database, migrated), the in-process transport, and a worker and orchestrator running.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
from litestar import Litestar

from tests.databases import mariadb_admin, pg_admin
from treadle.config import (
    DatabaseSettings,
    LimitsSettings,
    OrchestratorSettings,
    Settings,
    TransportSettings,
    WorkerSettings,
)
from treadle.modules.api import create_app
from treadle.modules.orchestrator import ScheduleService
from treadle.wiring import Process, build

DATABASES = ("memory", "sqlite", "postgres", "mariadb")


@asynccontextmanager
async def database_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of an empty database of this kind, dropped afterwards."""
    name = f"treadle_api_{uuid.uuid4().hex[:12]}"
    if kind == "memory":
        yield "memory://"  # a store of its own per engine built
    elif kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
    elif kind == "postgres":
        await pg_admin(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
        finally:
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif kind == "mariadb":
        await mariadb_admin(f"CREATE DATABASE `{name}`")
        try:
            yield f"mysql+asyncmy://root@127.0.0.1:3306/{name}"
        finally:
            await mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")
    else:  # pragma: no cover - a typo in a test
        raise ValueError(kind)


def engine_app(engine: Process) -> Litestar:
    """The API app wired to this engine, as `treadle serve` wires it (without keys)."""
    return create_app(
        run_control=engine.run_service,
        workflows=engine.store,
        runs=engine.store,
        health=engine.health_checks(),
        settings=engine.settings.api,
        limits=engine.settings.limits,
        run_ends=engine.run_service.finishes,
        schedules=ScheduleService(engine.store, engine.clock, runs=engine.run_service),
    )


@asynccontextmanager
async def running_engine(
    url: str, limits: LimitsSettings | None = None
) -> AsyncIterator[tuple[Process, Litestar]]:
    """A migrated engine on `url` with its worker and orchestrator running, and its app."""
    settings = Settings(
        database=DatabaseSettings(url=url, pool_size=4),
        transport=TransportSettings(kind="memory"),
        worker=WorkerSettings(concurrency=4, drain_seconds=0.2),
        orchestrator=OrchestratorSettings(timer_poll_seconds=0.2, sweep_interval_seconds=0.5),
        limits=limits or LimitsSettings(),
    )
    engine = build(settings, handler_modules=["tests.integration.api.handlers"])
    await engine.store.migrate()
    await engine.connect()
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(engine.orchestrator().run)  # its recovery first, as serve does
            tg.start_soon(engine.worker().run)
            yield engine, engine_app(engine)
            tg.cancel_scope.cancel()
    finally:
        await engine.close()


@asynccontextmanager
async def engine_client(
    kind: str, tmp_path: Path, limits: LimitsSettings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client, in process, on the API of a running engine on a database of `kind`."""
    async with database_url(kind, tmp_path) as url, running_engine(url, limits) as (_, app):
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(base_url="http://treadle.test", transport=transport) as c:
            yield c
