"""Pooled PostgreSQL connections: pinged after sitting idle, not on every checkout."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.store.conftest import PG_HOST
from treadle.store import _database
from treadle.store._sqlalchemy import SqlStore


async def _cut_connections(database: str) -> int:
    conn = await asyncpg.connect(f"{PG_HOST}/postgres")
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        )
    finally:
        await conn.close()


@pytest.mark.anyio
async def test_an_idle_connection_cut_by_the_server_is_replaced_without_an_error(
    pg_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that sat idle is pinged first, so a restart while idle fails nothing."""
    store = SqlStore(pg_database)
    try:
        await store.ping()
        assert await _cut_connections(pg_database.rsplit("/", 1)[1]) >= 1
        monkeypatch.setattr(_database, "PING_IDLE_SECONDS", 0.0)
        await store.ping()
    finally:
        await store.close()
