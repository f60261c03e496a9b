"""The store contract suite runs over every database, each test on a database of its own.

Memory: the in-process `MemoryStore`, fresh per test (a twin shares its data).
PostgreSQL: a migrated template database per xdist worker, copied per test (fast).
SQLite: a fresh file per test. MySQL/MariaDB: a fresh database per test, migrated (it has
no templates). SQLAlchemy's async engine needs asyncio, so no trio here.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest

from tests.databases import mariadb_admin, pg_admin
from treadle.store._sqlalchemy import SqlStore
from treadle.store.memory import MemoryStore

PG_HOST = "postgresql://postgres@127.0.0.1:5432"
MYSQL_HOST = "mysql://root@127.0.0.1:3306"


@pytest.fixture
def anyio_backend() -> str:
    """SQLAlchemy's asyncio extension and asyncpg run on asyncio only."""
    return "asyncio"


async def _create_template(name: str) -> None:
    await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await pg_admin(f'CREATE DATABASE "{name}"')
    store = SqlStore(f"{PG_HOST}/{name}")
    try:
        await store.migrate()
    finally:
        await store.close()


@pytest.fixture(scope="session")
def pg_template(worker_id: str) -> Iterator[str]:
    """A migrated PostgreSQL database to copy, private to this xdist worker."""
    name = f"treadle_tpl_{worker_id}_{os.getpid()}"
    anyio.run(_create_template, name, backend="asyncio")
    yield name
    anyio.run(pg_admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', backend="asyncio")


@pytest.fixture
async def pg_database(pg_template: str) -> AsyncIterator[str]:
    """The URL of a fresh, migrated PostgreSQL database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    await pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield f"{PG_HOST}/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_pg_database() -> AsyncIterator[str]:
    """The URL of a fresh PostgreSQL database with no schema at all."""
    name = f"t_{uuid.uuid4().hex}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_HOST}/{name}"
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def postgres_store(pg_database: str) -> AsyncIterator[SqlStore]:
    """A store on its own migrated PostgreSQL database."""
    store = SqlStore(pg_database, pool_size=4)
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def empty_mysql_database() -> AsyncIterator[str]:
    """The URL of a fresh MySQL/MariaDB database with no schema, dropped after the test."""
    name = f"t_{uuid.uuid4().hex}"
    await mariadb_admin(f"CREATE DATABASE `{name}`")
    try:
        yield f"{MYSQL_HOST}/{name}"
    finally:
        await mariadb_admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
async def mysql_store(empty_mysql_database: str) -> AsyncIterator[SqlStore]:
    """A store on its own migrated MySQL/MariaDB database."""
    store = SqlStore(empty_mysql_database, pool_size=4)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()


@pytest.fixture
async def sqlite_store(tmp_path: object) -> AsyncIterator[SqlStore]:
    """A store on its own migrated SQLite file."""
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path}/treadle.db")
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def memory_store() -> MemoryStore:
    """A fresh in-process store."""
    return MemoryStore()


@pytest.fixture(params=["memory", "sqlite", "postgres", "mysql"])
def store(request: pytest.FixtureRequest) -> SqlStore:
    """The store under test, once per adapter and database."""
    value: SqlStore = request.getfixturevalue(f"{request.param}_store")
    return value


@pytest.fixture
async def twin(store: SqlStore | MemoryStore) -> AsyncIterator[SqlStore | MemoryStore]:
    """A second store on the same database, as another process would have."""
    if isinstance(store, MemoryStore):
        yield MemoryStore(data=store.data)  # the same dicts: one database, two processes
        return
    other = SqlStore(store.url, pool_size=4)
    try:
        yield other
    finally:
        await other.close()
