"""Engines and transactions: one `Database` per store, no module-level state.

SQLite allows one writer at a time. Rather than let concurrent writers collide and fail
with "database is locked", writes in this process queue on a lock and open with
`BEGIN IMMEDIATE` (which waits on `busy_timeout` for writers in other processes); WAL
lets reads proceed beside them. PostgreSQL and MySQL serialise on row locks instead.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

_SCHEMES = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "mariadb": "mysql+asyncmy",
}
_BUSY_TIMEOUT_MS = 30_000
_WRITE = "treadle_write"
_SYNCHRONOUS = ("NORMAL", "FULL")


def normalise_url(url: str) -> URL:
    """The URL with the async driver Treadle uses when the scheme names none."""
    parsed = make_url(url)
    return parsed.set(drivername=_SCHEMES.get(parsed.drivername, parsed.drivername))


def server_engine_kwargs(
    dialect: str, pool_size: int, echo: bool, ssl_context: ssl.SSLContext | None
) -> dict[str, Any]:
    """`create_async_engine` arguments for PostgreSQL or MySQL (not SQLite)."""
    kwargs: dict[str, Any] = {
        "echo": echo,
        "pool_size": pool_size,
        "max_overflow": pool_size,
        # No ping on every checkout: that is one more round trip per transaction. A
        # connection idle for a while is pinged instead (see `_ping_when_idle`); one
        # cut while busy fails its statement, the pool drops every older connection,
        # and callers retry transient store errors.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
    }
    if dialect == "mysql":
        # MySQL defaults to REPEATABLE READ; READ COMMITTED makes it read what a
        # concurrent writer just committed, as PostgreSQL does (after a duplicate key).
        kwargs["isolation_level"] = "READ COMMITTED"
    if ssl_context is not None:
        # asyncpg and asyncmy both take an SSLContext as their `ssl` connect argument.
        kwargs["connect_args"] = {"ssl": ssl_context}
    return kwargs


class Database:
    """An engine plus the transaction discipline of its dialect."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        ssl_context: ssl.SSLContext | None = None,
        sqlite_synchronous: str = "normal",
    ) -> None:
        if sqlite_synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(
                f"sqlite_synchronous must be normal or full, not {sqlite_synchronous!r}"
            )
        self._synchronous = sqlite_synchronous.upper()
        self.url = normalise_url(url)
        self.dialect = self.url.get_backend_name()
        self.is_sqlite = self.dialect == "sqlite"
        self._in_memory = self.is_sqlite and self.url.database in (None, "", ":memory:")
        self._ssl_context = ssl_context
        self.engine = self._create_engine(pool_size, echo)
        # A `:memory:` database is one shared connection, so even reads must take turns.
        self._gate = anyio.Lock() if self.is_sqlite else None

    def _create_engine(self, pool_size: int, echo: bool) -> AsyncEngine:
        if not self.is_sqlite:
            kwargs = server_engine_kwargs(self.dialect, pool_size, echo, self._ssl_context)
            engine = create_async_engine(self.url, **kwargs)
            _ping_when_idle(engine)
            return engine
        if not self._in_memory and self.url.database:
            Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # `transaction()` always ends its transaction (shielded), so the pool's own
        # ROLLBACK on return would only cost another trip to the SQLite thread.
        engine = create_async_engine(self.url, echo=echo, pool_reset_on_return=None)
        _configure_sqlite(engine, in_memory=self._in_memory, synchronous=self._synchronous)
        return engine

    @asynccontextmanager
    async def transaction(
        self, *, write: bool, single: bool = False
    ) -> AsyncIterator[AsyncConnection]:
        """A connection inside a transaction, committed on success, rolled back otherwise.

        The rollback and the release are shielded from cancellation, so a cancelled caller
        never hands the pool a connection that is still inside a transaction.

        `single` promises one statement, atomic on its own: PostgreSQL then runs it in
        autocommit, sparing the BEGIN and COMMIT round trips.
        """
        async with self._turn(write):
            conn = await self.engine.connect()
            try:
                if write and self.is_sqlite:
                    await conn.execution_options(**{_WRITE: True})
                elif single and self.dialect == "postgresql":
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.begin()
                yield conn
                await conn.commit()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await _rollback_or_discard(conn)
                raise
            finally:
                with anyio.CancelScope(shield=True):
                    await conn.close()

    def _turn(self, write: bool) -> AbstractAsyncContextManager[Any]:
        if self._gate is not None and (write or self._in_memory):
            return self._gate
        return nullcontext()

    async def dispose(self) -> None:
        """Close every pooled connection."""
        with anyio.CancelScope(shield=True):
            await self.engine.dispose()


async def _rollback_or_discard(conn: AsyncConnection) -> None:
    # A connection interrupted mid-statement may not even take a ROLLBACK; then it is
    # invalidated, so the pool replaces it instead of reusing it.
    try:
        await conn.rollback()
    except Exception:  # noqa: BLE001 - any failure here means the connection is unusable
        await conn.invalidate()


PING_IDLE_SECONDS = 2.0
"""A pooled connection unused for longer than this is pinged before it is handed out."""
_CHECKED_IN = "treadle_checked_in"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Ping a connection on checkout only if it sat idle (a restart while idle is survived
    without a failed request, and a busy pool pays no round trip per transaction)."""
    dialect = engine.sync_engine.dialect

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in = record.info.get(_CHECKED_IN)
        if checked_in is None or time.monotonic() - checked_in < PING_IDLE_SECONDS:
            return  # new, or in use just now
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool replaces the connection and tries the checkout again.
            raise sa_exc.DisconnectionError(str(exc)) from exc


def _configure_sqlite(engine: AsyncEngine, *, in_memory: bool, synchronous: str) -> None:
    """WAL, `synchronous`, a busy timeout, foreign keys, and explicit BEGIN (IMMEDIATE writes).

    In WAL mode `synchronous=NORMAL` fsyncs at checkpoints, not at every commit: a commit
    survives the process being killed (the guarantee Treadle makes), but the last commits
    may be lost on a power cut or an OS crash. FULL fsyncs every commit (about 0.7 ms each
    on the benchmark machine).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver: its implicit, deferred BEGIN cannot be made
        # IMMEDIATE, and a deferred writer fails at once on a stale WAL snapshot.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
