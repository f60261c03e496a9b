"""The state store: every durable fact of the engine, in SQLite, PostgreSQL or MySQL.

`build_store(settings)` picks the database from the URL; the SQLAlchemy machinery (and
with it the driver) is imported only when a store is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.store._errors import StoreError, StoreUnavailable

if TYPE_CHECKING:
    from app.config import DatabaseSettings
    from app.ports import StateStore


def build_store(settings: DatabaseSettings) -> StateStore:
    """The store for `settings.url` (`sqlite+aiosqlite://`, `postgresql+asyncpg://`, ...).

    Bare schemes (`sqlite://`, `postgresql://`, `mysql://`) get Treadle's async driver.
    The schema is not touched: call `migrate()` on the result.
    """
    from app.store._sqlalchemy import SqlStore  # noqa: PLC0415 - keeps drivers lazy

    return SqlStore(settings.url, pool_size=settings.pool_size, echo=settings.echo)


__all__ = ["StoreError", "StoreUnavailable", "build_store"]
