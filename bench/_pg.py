"""Scratch PostgreSQL databases: each benchmark cell creates its own and drops it after."""

from __future__ import annotations

import uuid

import psycopg

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def url(database: str, driver: str = "postgresql") -> str:
    """A URL for `database` on the local server, e.g. driver 'postgresql+asyncpg'."""
    return f"{driver}://postgres@127.0.0.1:5432/{database}"


def create(prefix: str) -> str:
    """Create a fresh database named after `prefix`; returns its name."""
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}".replace("-", "_")
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop(name: str) -> None:
    """Drop a database made by `create`, disconnecting whoever is still on it."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
