"""The worker's reports of itself to the store, so the dashboard can tell who is alive."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta

import anyio
import msgspec

from treadle.domain.limits import NAME_CHARS
from treadle.observability import get_logger
from treadle.ports import Clock, WorkerRecord, WorkerRegistry

log = get_logger(__name__)

KEPT_FOR = timedelta(days=1)
"""A worker's row silent this long is deleted (by any worker's next prune)."""
PRUNE_EVERY = 60
"""Reports between two prunes: pruning is rare work, every report would be waste."""


class Presence:
    """Upserts this worker's row every `interval` seconds until cancelled.

    A failed report is logged and retried at the next tick: the registry is for people
    looking, and a database away must not stop the worker running attempts.
    """

    def __init__(
        self,
        registry: WorkerRegistry,
        clock: Clock,
        source: str,
        interval: float,
        *,
        queues: list[str],
        handlers: list[str],
        concurrency: int,
        inflight: Callable[[], int],
    ) -> None:
        self._registry = registry
        self._clock = clock
        self._interval = interval
        self._inflight = inflight
        # The nonce tells a restarted process apart from the one before it on the same pid.
        self._record = WorkerRecord(
            id=f"{source}:{uuid.uuid4().hex[:8]}"[-NAME_CHARS:],  # the column's width
            host=socket.gethostname()[:NAME_CHARS],
            pid=os.getpid(),
            queues=queues,
            handlers=handlers,
            concurrency=concurrency,
            inflight=0,
            started_at=clock.now(),
            last_seen=clock.now(),
        )

    @property
    def worker_id(self) -> str:
        """The id this worker reports under."""
        return self._record.id

    async def serve(self) -> None:
        """Report now, then every interval; prune the long-silent rows now and then."""
        reports = 0
        while True:
            try:
                await self.report()
                if reports % PRUNE_EVERY == 0:
                    await self._registry.prune_workers(self._clock.now() - KEPT_FOR)
            except Exception:
                log.warning("the worker could not report itself", exc_info=True)
            reports += 1
            await anyio.sleep(self._interval)

    async def report(self) -> None:
        """Upsert this worker's row as it is now."""
        self._record = msgspec.structs.replace(
            self._record, inflight=self._inflight(), last_seen=self._clock.now()
        )
        await self._registry.record_worker(self._record)
