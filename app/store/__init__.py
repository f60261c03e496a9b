"""The state store: every durable fact of the engine, in SQLite, PostgreSQL or MySQL.

`build_store(settings)` picks the database from the URL; the SQLAlchemy machinery (and
with it the driver) is imported only when a store is built. `memory://` keeps everything
in the process (`memory.MemoryStore`): nothing survives a restart, so it is for tests and
embedding only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from treadle.store._errors import StoreError, StoreUnavailable

MEMORY_URL = "memory://"
"""The database URL of the in-process store (for tests and embedding; keeps nothing)."""

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from treadle.config import DatabaseSettings
    from treadle.ports import ApiKeyStore, StateStore


def build_store(settings: DatabaseSettings) -> StateStore:
    """The store for `settings.url` (`sqlite+aiosqlite://`, `postgresql+asyncpg://`, ...).

    Bare schemes (`sqlite://`, `postgresql://`, `mysql://`) get Treadle's async driver;
    `memory://` the in-process store. The schema is not touched: call `migrate()` on it.
    """
    if settings.url == MEMORY_URL:
        from treadle.store.memory import MemoryStore  # noqa: PLC0415

        return MemoryStore()
    from treadle._tls import ssl_context  # noqa: PLC0415
    from treadle.store._sqlalchemy import SqlStore  # noqa: PLC0415 - keeps drivers lazy

    return SqlStore(
        settings.url,
        pool_size=settings.pool_size,
        echo=settings.echo,
        sqlite_synchronous=settings.sqlite_synchronous,
        ssl_context=ssl_context(settings.tls, "database.tls"),
    )


def api_key_store(store: StateStore) -> ApiKeyStore:
    """The API keys kept in `store`'s database, over the same connection pool."""
    from treadle.store._api_keys import SqlApiKeyStore  # noqa: PLC0415
    from treadle.store._sqlalchemy import SqlStore  # noqa: PLC0415
    from treadle.store.memory import MemoryStore  # noqa: PLC0415

    if isinstance(store, MemoryStore):
        return store  # it keeps its keys beside its runs

    if not isinstance(store, SqlStore):
        raise TypeError(f"API keys live in a SqlStore or MemoryStore, not {type(store).__name__}")
    return SqlApiKeyStore(store._db)  # one package: share the pool


def sql_engine(store: StateStore) -> AsyncEngine | None:
    """The SQLAlchemy engine under `store` (to instrument), None for the memory store."""
    from treadle.store._sqlalchemy import SqlStore  # noqa: PLC0415

    return store._db.engine if isinstance(store, SqlStore) else None  # one package


__all__ = [
    "MEMORY_URL",
    "StoreError",
    "StoreUnavailable",
    "api_key_store",
    "build_store",
    "sql_engine",
]
