"""Cancelling running attempts: the worker's map of what it runs, and its control listener.

Orchestrators broadcast `task.cancel` (`CancelAttempts`) on `broadcast.control` when a
run no longer waits for an attempt; every worker hears it (its own subscription) and the
one running a match stops it: the attempt's cancel scope is cancelled (an async handler
sees the cancellation at its next await; a sync handler's `ctx.cancelled` turns True) and
nothing is published for it; its dispatch is acked.

A cancel may arrive before the dispatch it concerns (the broker had not delivered it
yet). Each cancel is remembered, by run, with the time it was decided: a dispatch decided
before a cancel that names it is acked without running. A dispatch decided after it (the
run was retried since) runs as usual.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import anyio
import msgspec

from treadle.domain.events import CancelAttempts, DispatchTask
from treadle.domain.keys import AttemptKey
from treadle.messages import CONTROL_CHANNEL, decode
from treadle.modules.worker._context import AttemptControl
from treadle.observability import get_logger
from treadle.ports import Delivery, Transport

log = get_logger(__name__)

REMEMBERED_RUNS = 10_000
"""Runs whose cancels a worker remembers (the oldest are forgotten first)."""
CONTROL_PREFETCH = 64


class _Running:
    __slots__ = ("control", "scope")

    def __init__(self, control: AttemptControl, scope: anyio.CancelScope) -> None:
        self.control = control
        self.scope = scope


class RunningAttempts:
    """The attempts this worker runs, each with its cancel scope; and recent cancels."""

    def __init__(self, remembered_runs: int = REMEMBERED_RUNS) -> None:
        self._running: dict[AttemptKey, _Running] = {}
        self._cancels: OrderedDict[str, list[tuple[CancelAttempts, datetime]]] = OrderedDict()
        self._remembered_runs = remembered_runs

    @contextmanager
    def running(
        self, dispatch: DispatchTask, control: AttemptControl
    ) -> Iterator[anyio.CancelScope]:
        """Register the attempt while it runs; a cancel for it cancels the scope yielded."""
        key = dispatch.attempt_key
        with anyio.CancelScope() as scope:
            self._running[key] = _Running(control, scope)
            try:
                yield scope
            finally:
                self._running.pop(key, None)

    def cancel(self, command: CancelAttempts, decided_at: datetime) -> int:
        """Stop every running attempt `command` names and remember it; how many stopped."""
        self._remember(command, decided_at)
        stopped = 0
        for key, running in list(self._running.items()):
            if command.matches(*key) and not running.control.cancelled:
                running.control.cancelled = True
                running.scope.cancel()
                stopped += 1
        return stopped

    def cancelled_before(self, dispatch: DispatchTask, decided_at: datetime) -> bool:
        """Whether a cancel decided at or after this dispatch names it (it is stale)."""
        for command, cancelled_at in self._cancels.get(dispatch.run_id, ()):
            if cancelled_at >= decided_at and command.matches(*dispatch.attempt_key):
                return True
        return False

    def _remember(self, command: CancelAttempts, decided_at: datetime) -> None:
        self._cancels.setdefault(command.run_id, []).append((command, decided_at))
        self._cancels.move_to_end(command.run_id)
        while len(self._cancels) > self._remembered_runs:
            self._cancels.popitem(last=False)


async def listen_for_cancels(transport: Transport, attempts: RunningAttempts, group: str) -> None:
    """Apply every `task.cancel` broadcast to `attempts`, until cancelled."""
    async with transport.subscribe(CONTROL_CHANNEL, group, CONTROL_PREFETCH) as deliveries:
        async for delivery in deliveries:
            await _apply(delivery, attempts)


async def _apply(delivery: Delivery, attempts: RunningAttempts) -> None:
    try:
        env = decode(delivery.message.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("dead-lettering an undecodable control message", reason=str(exc))
        await delivery.nack(requeue=False)
        return
    command = env.payload
    if isinstance(command, CancelAttempts):
        stopped = attempts.cancel(command, env.timestamp)
        if stopped:
            log.info(
                "cancelling attempts the run no longer waits for",
                run_id=command.run_id,
                task_id=command.task_id,
                attempt=command.attempt,
                item=command.item,
                reason=command.reason,
                attempts=stopped,
            )
    await delivery.ack()
