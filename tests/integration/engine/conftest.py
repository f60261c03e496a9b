"""An engine on a real database (a tmp SQLite file, a fresh PostgreSQL database) with
the in-process transport, driven through `RunService` and the real worker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from treadle.config import (
    DatabaseSettings,
    OrchestratorSettings,
    Settings,
    TransportSettings,
    WorkerSettings,
)
from treadle.store import MEMORY_URL

PG_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def anyio_backend() -> str:
    """asyncpg and aiosqlite run on asyncio."""
    return "asyncio"


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres"),
    ]
)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own for each test: in memory, a SQLite file, or a PostgreSQL one."""
    if request.param == "memory":
        yield MEMORY_URL
        return
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}"
        return
    name = f"treadle_engine_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture
def durable_store(database_url: str) -> None:
    """Skip on the in-memory store: the test builds a second engine (a restart, another
    replica) that must find what the first one stored."""
    if database_url == MEMORY_URL:
        pytest.skip("the in-memory store is private to the engine that built it")


@pytest.fixture
def sql_store(database_url: str) -> None:
    """Skip on the in-memory store: the test reads the database's tables with SQL."""
    if database_url == MEMORY_URL:
        pytest.skip("the in-memory store has no tables to read")


@pytest.fixture
def make_settings(database_url: str) -> SettingsFactory:
    """Settings for a fast engine on the test's database; keyword overrides per section."""

    def make(
        *,
        drain_seconds: float = 0.2,
        decide_locally: bool = True,
        eager: bool = True,
        eager_lease_seconds: float = 15.0,
    ) -> Settings:
        return Settings(
            database=DatabaseSettings(url=database_url, pool_size=5),
            transport=TransportSettings(kind="memory"),
            worker=WorkerSettings(
                concurrency=8,
                handlers=["tests.integration.engine.handlers"],
                drain_seconds=drain_seconds,
                decide_locally=decide_locally,
                eager=eager,
                eager_lease_seconds=eager_lease_seconds,
            ),
            orchestrator=OrchestratorSettings(
                default_task_timeout=30.0,
                timer_poll_seconds=0.2,
                sweep_interval_seconds=0.5,
                outbox_stale_seconds=1.0,
            ),
        )

    return make
