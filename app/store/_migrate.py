"""Running the alembic migrations from code: no alembic.ini on the user's side."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from treadle.store._tables import VERSION_TABLE

# A stdlib logger, not structlog's: local commands (`treadle keys create`, whose stdout is
# the key) migrate without configuring logging, and an unconfigured structlog logger prints
# to stdout, where stdlib's drops info lines. Served, the line is JSON like any other.
log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
# Any constant shared by every Treadle process; it names the lock, nothing else.
_PG_LOCK_ID = 0x7472_6561_646C  # "treadl"
_MYSQL_LOCK = "treadle_migrate"
_MYSQL_LOCK_WAIT_SECONDS = 300


def alembic_config(connection: Connection | None = None) -> Config:
    """An alembic Config pointing at the packaged migrations (and a connection to use)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(conn: AsyncConnection) -> None:
    """Bring the schema to head inside the caller's transaction, one migrator at a time.

    PostgreSQL holds a transaction-scoped advisory lock, so a second process waits and then
    finds nothing left to do; SQLite's writer is already exclusive (BEGIN IMMEDIATE);
    MySQL, whose DDL is not transactional, takes a named lock.
    """
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
    elif dialect in ("mysql", "mariadb"):
        await conn.execute(
            text("SELECT GET_LOCK(:name, :wait)"),
            {"name": _MYSQL_LOCK, "wait": _MYSQL_LOCK_WAIT_SECONDS},
        )
    try:
        await conn.run_sync(_upgrade_sync)
    finally:
        if dialect in ("mysql", "mariadb"):
            await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _MYSQL_LOCK})


def _upgrade_sync(connection: Connection) -> None:
    before = _current_heads(connection)
    command.upgrade(alembic_config(connection), "head")
    after = _current_heads(connection)
    # One line in place of alembic's dozen (its logger is held at warning, log.quiet_loggers).
    if after != before:
        revisions = {
            "from_revision": ",".join(sorted(before)) or None,
            "to_revision": ",".join(sorted(after)),
        }
        log.info("database migrated", extra=revisions)


def _current_heads(connection: Connection) -> set[str]:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return set(context.get_current_heads())


async def is_at_head(conn: AsyncConnection) -> bool:
    """Whether the database's recorded revisions are exactly the packaged heads."""
    return await conn.run_sync(_is_at_head_sync)


def _is_at_head_sync(connection: Connection) -> bool:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return _current_heads(connection) == set(heads)
