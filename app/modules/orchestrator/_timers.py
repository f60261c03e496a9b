"""The timer loop: fire durable timers when due, and wake early for sooner ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import anyio

from treadle.config import OrchestratorSettings
from treadle.observability import get_logger
from treadle.ports import Clock, DueTimer, TimerStore

log = get_logger(__name__)

FIRE_CONCURRENCY = 16
"""Timers of one batch fired at once (each is one transaction on its own run)."""

LEASED_RECHECK_SECONDS = 0.1
"""How soon to look again when the earliest timer is due but another loop holds it."""


class TimerAlarm:
    """Wakes the sleeping timer loop when this process starts a timer due before it wakes."""

    def __init__(self) -> None:
        self._wake_at: datetime | None = None
        self._event: anyio.Event | None = None
        self._earliest_seen: datetime | None = None

    def notify(self, fire_at: datetime) -> None:
        """A decision committed a timer due at `fire_at`."""
        if self._earliest_seen is None or fire_at < self._earliest_seen:
            self._earliest_seen = fire_at
        if self._event is not None and self._wake_at is not None and fire_at < self._wake_at:
            self._event.set()

    def reset(self) -> None:
        """Forget earlier notices: the loop is about to look at the store afresh."""
        self._earliest_seen = None

    async def sleep(self, wake_at: datetime, seconds: float) -> None:
        """Sleep `seconds` (until `wake_at`), or less if a sooner timer is notified."""
        # A timer notified between `reset` and now (while the loop read the store) may
        # not be in what it read: do not sleep past it.
        if self._earliest_seen is not None and self._earliest_seen < wake_at:
            return
        self._event = anyio.Event()
        self._wake_at = wake_at
        try:
            with anyio.move_on_after(seconds):
                await self._event.wait()
        finally:
            self._event = None
            self._wake_at = None


FireTimer = Callable[[DueTimer], Awaitable[None]]


class TimerLoop:
    """Claims due timers in batches and fires each through `fire`."""

    def __init__(
        self,
        store: TimerStore,
        fire: FireTimer,
        clock: Clock,
        settings: OrchestratorSettings,
        alarm: TimerAlarm,
    ) -> None:
        self._store = store
        self._fire = fire
        self._clock = clock
        self._settings = settings
        self._alarm = alarm

    async def run(self) -> None:
        """Fire timers until cancelled; a failing round is logged and retried after a poll."""
        poll = self._settings.timer_poll_seconds
        while True:
            self._alarm.reset()
            try:
                fired = await self.fire_due()
                if fired >= self._settings.timer_batch:
                    continue  # there may be more due right now
                seconds = await self._seconds_to_next()
            except Exception:
                log.exception("the timer loop failed a round; trying again", retry_in_seconds=poll)
                seconds = poll
            now = self._clock.now()
            await self._alarm.sleep(now + timedelta(seconds=seconds), seconds)

    async def fire_due(self) -> int:
        """Claim the timers due now and fire them; how many were claimed."""
        settings = self._settings
        due = await self._store.claim_due_timers(
            self._clock.now(), settings.timer_batch, settings.timer_lease_seconds
        )
        limiter = anyio.CapacityLimiter(FIRE_CONCURRENCY)
        async with anyio.create_task_group() as tg:
            for timer in due:
                tg.start_soon(self._fire_one, timer, limiter)
        return len(due)

    async def _fire_one(self, timer: DueTimer, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            try:
                await self._fire(timer)
            except Exception:
                # Its lease runs out and it is claimed again, so the fire is retried.
                log.exception("firing a timer failed", kind=timer.kind, run_id=timer.run_id)

    async def _seconds_to_next(self) -> float:
        poll = self._settings.timer_poll_seconds
        next_at = await self._store.next_timer_at()
        if next_at is None:
            return poll
        seconds = (next_at - self._clock.now()).total_seconds()
        if seconds <= 0:
            # Due yet not claimed by us: leased by another loop (or due just now).
            return min(poll, LEASED_RECHECK_SECONDS)
        return min(poll, seconds)
