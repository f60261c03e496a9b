"""The orchestrator role: events consumer, timer loop and outbox sweeper in one task group."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus

from treadle.config import OrchestratorSettings
from treadle.domain.errors import RunNotFound
from treadle.domain.events import DispatchLost
from treadle.messages import TASKS_PREFIX
from treadle.modules.orchestrator._consumer import EventConsumer
from treadle.modules.orchestrator._relay import Relay
from treadle.modules.orchestrator._runs import RunService
from treadle.modules.orchestrator._schedules import ScheduleLoop
from treadle.modules.orchestrator._timers import TimerLoop
from treadle.observability import Telemetry, collect_store_gauges, get_logger
from treadle.ports import Clock, StateStore, Transport

log = get_logger(__name__)

RECOVERY_PAGE = 500


class Orchestrator:
    """Drives runs forward from worker events and durable timers until cancelled.

    Pass the `RunService` the API uses in this process, so timers it starts wake this
    orchestrator's timer loop; without one, the orchestrator builds its own.
    """

    def __init__(
        self,
        store: StateStore,
        transport: Transport,
        settings: OrchestratorSettings,
        clock: Clock,
        *,
        source: str = "orchestrator",
        run_service: RunService | None = None,
        transient: Sequence[type[Exception]] = (),
        telemetry: Telemetry | None = None,
        gauge_interval_seconds: float = 15.0,
    ) -> None:
        self._store = store
        self._transport = transport
        self._settings = settings
        self._clock = clock
        self._telemetry = telemetry or Telemetry.off("orchestrator")
        self._gauge_interval = gauge_interval_seconds
        if run_service is None:
            relay = Relay(store, transport, telemetry=self._telemetry)
            run_service = RunService(
                store, relay, clock, settings, source=source, telemetry=self._telemetry
            )
        self.run_service = run_service
        # The sweeper shares the decisions' relay, so it skips the rows they are publishing.
        self._relay = run_service.relay
        self._consumer = EventConsumer(
            transport,
            self.run_service,
            prefetch=settings.event_prefetch,
            transient=transient,
            metrics=self._telemetry.metrics,
        )
        self._timers = TimerLoop(
            store, self.run_service.fire_timer, clock, settings, self.run_service.alarm
        )
        self._schedules = ScheduleLoop(store, self.run_service, clock)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover (in-process transport only), then consume, fire timers and sweep.

        Started with `TaskGroup.start`, it returns once recovery is over: recovery takes
        every attempt in flight and every unsent dispatch for the dead process's, so work
        this process decides meanwhile (a run the API starts, an attempt its worker runs
        eagerly) would be sent twice. The serving code starts the other roles after it.
        """
        if not self._transport.DURABLE:
            await self.recover()
        task_status.started()
        settings = self._settings
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._consumer.run)
            tg.start_soon(self._timers.run)
            tg.start_soon(self._schedules.run)
            tg.start_soon(
                self._relay.sweep_forever,
                self._clock,
                settings.sweep_interval_seconds,
                settings.outbox_stale_seconds,
                settings.outbox_retention_seconds,
            )
            tg.start_soon(
                collect_store_gauges,
                self._telemetry.metrics,
                self._store,
                self._clock.now,
                self._gauge_interval,
            )

    async def recover(self) -> int:
        """Re-dispatch every attempt in flight: a transport without durability lost them.

        The dispatches the last process left unsent in the outbox go first (marked sent,
        not published): recovery sends each of their attempts again, counted as one more
        delivery, and a stale copy carrying its old count would let an attempt that ends
        its process (`os._exit`, a segfault) run again after every restart, for ever.
        """
        await self._drop_unsent_dispatches()
        recovered = 0
        after: str | None = None
        while True:
            page = await self._store.inflight_attempts(RECOVERY_PAGE, after)
            for attempt in page:
                lost = DispatchLost(
                    run_id=attempt.run_id,
                    task_id=attempt.task_id,
                    attempt=attempt.attempt,
                    item=attempt.item,
                )
                try:
                    await self.run_service.apply_event(attempt.run_id, lost)
                except RunNotFound:
                    continue
                recovered += 1
            if len(page) < RECOVERY_PAGE:
                break
            after = page[-1].run_id
        if recovered:
            log.warning(
                "re-dispatched the attempts in flight when the process stopped", attempts=recovered
            )
        return recovered

    async def _drop_unsent_dispatches(self) -> None:
        """Mark sent every unsent outbox row on a task channel (see `recover`).

        The sweeper has not started yet, so no row is being published by this process's
        sweeper; a row a decision of this process is relaying is published all the same.
        """
        dropped = 0
        while True:
            # Leased rows too: their eager attempts died with the last process (an
            # in-process transport has only the one).
            page = await self._store.claim_unsent(self._clock.now(), RECOVERY_PAGE, leased=True)
            ids = [r.id for r in page if r.channel.startswith(TASKS_PREFIX)]
            await self._store.mark_sent(ids)
            dropped += len(ids)
            # Stop at a short page, or at a full page without dispatches (the sweeper
            # publishes the other rows as usual).
            if len(page) < RECOVERY_PAGE or not ids:
                break
        if dropped:
            log.warning("dropped the dispatches the last process left unsent", rows=dropped)
