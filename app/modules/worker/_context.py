"""`TaskContext`: what a handler knows about the attempt it runs, and its heartbeat."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread

HeartbeatSink = Callable[[Any], Awaitable[None]]
"""Publishes one heartbeat with the handler's details."""

HEARTBEAT_MIN_INTERVAL = 1.0
"""Seconds between two heartbeats that are actually sent; the rest are dropped."""


class _Heartbeat:
    """Rate-limits one attempt's heartbeats so a chatty handler cannot flood the broker."""

    def __init__(self, sink: HeartbeatSink | None) -> None:
        self._sink = sink
        self._last: float | None = None

    async def beat(self, details: Any) -> bool:
        if self._sink is None:
            return False
        now = anyio.current_time()
        if self._last is not None and now - self._last < HEARTBEAT_MIN_INTERVAL:
            return False
        self._last = now
        await self._sink(details)
        return True


@dataclass(frozen=True)
class TaskContext:
    """The attempt a handler runs: its identity, and a way to report progress.

    `idempotency_key` is the same for every attempt of a task, so a handler can pass it to
    the systems it calls and make its side effect happen once despite retries.
    """

    run_id: str
    task_id: str
    attempt: int
    workflow: str = ""
    version: int = 0
    idempotency_key: str = ""
    _heartbeat: _Heartbeat = field(
        default_factory=lambda: _Heartbeat(None), repr=False, compare=False
    )

    @classmethod
    def for_attempt(
        cls,
        *,
        run_id: str,
        task_id: str,
        attempt: int,
        workflow: str,
        version: int,
        idempotency_key: str,
        heartbeat: HeartbeatSink | None,
    ) -> TaskContext:
        """A context whose heartbeats go to `heartbeat` (None: heartbeats are no-ops)."""
        return cls(
            run_id=run_id,
            task_id=task_id,
            attempt=attempt,
            workflow=workflow,
            version=version,
            idempotency_key=idempotency_key,
            _heartbeat=_Heartbeat(heartbeat),
        )

    async def heartbeat(self, details: Any = None) -> bool:
        """Tell the orchestrator the attempt is alive; at most one is sent per second.

        Returns whether this one was sent (False when rate-limited or not connected).
        """
        return await self._heartbeat.beat(details)

    def heartbeat_sync(self, details: Any = None) -> bool:
        """`heartbeat` for a sync handler, which runs in a worker thread."""
        return anyio.from_thread.run(self._heartbeat.beat, details)
