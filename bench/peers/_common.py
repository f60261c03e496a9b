"""Helpers the peers share: reading durable completion records from PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from bench import _pg
from bench._engine import wait_until


class PgReader:
    """A connection to a scratch database for reading an engine's completion records."""

    def __init__(self, database: str) -> None:
        self.database = database
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._lock = asyncio.Lock()

    async def fetch(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    _pg.url(self.database), autocommit=True
                )
            cursor = await self._conn.execute(query, params)
            return list(await cursor.fetchall()) if cursor.description else []

    async def count(self, query: str, params: Sequence[Any] = ()) -> int:
        rows = await self.fetch(query, params)
        return int(rows[0][0]) if rows else 0

    async def wait_count(
        self, query: str, params: Sequence[Any], target: int, limit_s: float, interval: float = 0.2
    ) -> None:
        async def done() -> bool:
            return await self.count(query, params) >= target

        await wait_until(done, limit_s, interval, what=query)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
