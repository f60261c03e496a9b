"""An attempt's `task.started`: published on its own once the attempt has run a while,
or carried by the result of an attempt quicker than that."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import msgspec

from treadle.domain.events import TaskCompleted, TaskFailed, TaskStarted
from treadle.messages import Payload

START_REPORT_SECONDS = 0.05
"""How long an attempt runs before its `task.started` is published on its own.

A quicker attempt's start travels in its result (`started_at`): one message instead of
two, which the decider takes as the start then the result. Its `started_at` is still the
time it began.
"""


class StartReport:
    """An attempt's `task.started`, published once, before anything after it; or, for an
    attempt that ended before its start went out, carried by its result instead."""

    def __init__(self, started: TaskStarted, report: Callable[[Payload], Awaitable[None]]) -> None:
        self._started = started
        self._report = report
        """Sends one event of the attempt (the worker's `_publish`)."""
        self._sent = False
        self._lock = anyio.Lock()

    async def send(self) -> None:
        """Publish the start if it is not out yet."""
        async with self._lock:
            if not self._sent:
                await self._report(self._started)
            self._sent = True

    async def send_result(self, result: TaskCompleted | TaskFailed) -> None:
        """Publish the result; it carries the start (`started_at`) when that is not out yet."""
        async with self._lock:
            if not self._sent:
                result = msgspec.structs.replace(result, started_at=self._started.started_at)
            await self._report(result)
            self._sent = True
