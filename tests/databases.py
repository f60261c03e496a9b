"""Admin statements on the machine's PostgreSQL and MariaDB, for the fixtures that make
and drop a database per test."""

from __future__ import annotations

import asyncmy
import asyncpg

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def pg_admin(sql: str) -> None:
    """Run one statement on PostgreSQL's `postgres` database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def mariadb_admin(sql: str) -> None:
    """Run one statement on MariaDB as root, outside any database."""
    conn = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
    finally:
        conn.close()
