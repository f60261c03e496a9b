"""Ending the SQLite driver's orphaned close tasks, which can otherwise wait forever.

When a task is cancelled while it holds a pooled aiosqlite connection, SQLAlchemy
invalidates the connection: it starts the driver's graceful `close()` as a shielded
task and, since the caller is cancelled, also stops the driver's thread. If that
orphaned task is itself cancelled while its first step is queued, aiosqlite's `close()`
waits in a `finally` on a second future that the stopped thread never resolves. Such a
task outlives the engine, and `asyncio.run` (or a test runner) then waits for it
forever at shutdown. After the pool is disposed nothing can use those connections, so
cancelling the tasks until they end loses nothing.
"""

from __future__ import annotations

import asyncio

import sniffio

_ORPHAN = "_terminate_graceful_close"
_GRACE_SECONDS = 1.0
_ROUNDS = 20


def _orphaned_closes() -> list[asyncio.Task[object]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done() and getattr(task.get_coro(), "__name__", "") == _ORPHAN
    ]


async def end_orphaned_closes() -> None:
    """Give orphaned driver closes a moment to finish, then cancel them until they end."""
    if sniffio.current_async_library() != "asyncio":
        return
    orphans = _orphaned_closes()
    if not orphans:
        return
    await asyncio.wait(orphans, timeout=_GRACE_SECONDS)
    for _ in range(_ROUNDS):
        pending = [task for task in orphans if not task.done()]
        if not pending:
            return
        for task in pending:
            task.cancel()  # each cancel moves aiosqlite's close() past one stuck await
        await asyncio.wait(pending, timeout=0.05)
