"""The schema's lifecycle: migrations, their idempotence and locking, health and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from tests.integration.store.factories import make_run, unchanged
from tests.stores import create_run
from treadle.config import DatabaseSettings
from treadle.store import StoreUnavailable, build_store
from treadle.store._sqlalchemy import SqlStore
from treadle.store._tables import VERSION_TABLE, metadata

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def store(request: pytest.FixtureRequest) -> SqlStore:
    """The SQL stores only: a schema, its migrations and a ping are a database's business
    (the in-memory store has none of them)."""
    value: SqlStore = request.getfixturevalue(f"{request.param}_store")
    return value


@pytest.fixture
def sqlite_fresh(tmp_path: Path) -> str:
    """The URL of an SQLite file that does not exist yet, in a folder that does not either."""
    return f"sqlite:///{tmp_path}/nested/dir/treadle.db"


@pytest.fixture
def postgres_fresh(empty_pg_database: str) -> str:
    """The URL of an empty PostgreSQL database."""
    return empty_pg_database


@pytest.fixture
def mysql_fresh(empty_mysql_database: str) -> str:
    """The URL of an empty MySQL/MariaDB database."""
    return empty_mysql_database


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    """A database without any schema, once per database kind."""
    url: str = request.getfixturevalue(f"{request.param}_fresh")
    return url


async def test_migrate_twice_is_harmless(store: SqlStore) -> None:
    """Migrating an up-to-date database changes nothing and keeps the data."""
    run = make_run()
    await create_run(store, run, unchanged)
    await store.migrate()
    await store.migrate()
    assert await store.get_run(run.id) == run


async def test_concurrent_migrations_of_a_fresh_database(fresh_url: str) -> None:
    """Several processes migrating one empty database at once all succeed."""
    stores = [build_store(DatabaseSettings(url=fresh_url, pool_size=2)) for _ in range(3)]
    try:
        async with anyio.create_task_group() as tg:
            for s in stores:
                tg.start_soon(s.migrate)
        await create_run(stores[0], make_run(), unchanged)
        await stores[1].ping()
    finally:
        for s in stores:
            await s.close()


_ELSEWHERE = {
    "sqlite": {"ix_treadle_tasks_status", "ix_treadle_outbox_sent"},
    "postgresql": {"ix_treadle_tasks_status", "ix_treadle_outbox_sent"},
    "mysql": {"ix_treadle_tasks_active", "ix_treadle_outbox_unsent"},
}


def _schema_diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": VERSION_TABLE, "compare_type": True}
    )
    return [
        d
        for d in compare_metadata(context, metadata)
        # Indexes that exist on some dialects only (partial ones, MySQL's full ones) are
        # declared with `ddl_if`, which autogenerate does not read.
        if not (d[0] == "add_index" and d[1].name in _ELSEWHERE[connection.dialect.name])
    ]


async def test_migrations_build_the_schema_the_tables_declare(store: SqlStore) -> None:
    """After migrating, the database has exactly the tables, columns and indexes in code."""
    async with store._db.engine.connect() as conn:
        diff = await conn.run_sync(_schema_diff)
    assert diff == []


async def test_unreachable_database_is_store_unavailable() -> None:
    """A database that cannot be reached raises StoreUnavailable, naming the operation."""
    store = SqlStore("postgresql://postgres@127.0.0.1:1/nothing")
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.ping()
        assert info.value.operation == "ping"
    finally:
        await store.close()


async def test_ping_succeeds_on_a_live_database(store: SqlStore) -> None:
    """ping returns quietly when the database answers."""
    await store.ping()
    assert store.dialect in {"sqlite", "postgresql", "mysql"}
