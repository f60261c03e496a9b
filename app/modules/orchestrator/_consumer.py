"""The events consumer: results and heartbeats from workers, applied to their runs."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import msgspec
import stamina

from treadle.domain.errors import RunNotFound
from treadle.domain.events import (
    CancelAttempts,
    CancelChildRun,
    ChildRunFinished,
    DispatchTask,
    StartChildRun,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
)
from treadle.messages import EVENTS_CHANNEL, Envelope, decode
from treadle.modules.orchestrator._children import handle_child_command
from treadle.modules.orchestrator._runs import RunService
from treadle.observability import Metrics, bind_context, get_logger
from treadle.ports import Delivery, Transport
from treadle.testing.crash import crash_point

log = get_logger(__name__)

CONSUMER_GROUP = "orchestrator"

WorkerEvent = (
    TaskStarted
    | TaskCompleted
    | TaskFailed
    | TaskHeartbeat
    | StartChildRun
    | CancelChildRun
    | ChildRunFinished
)

RETRY_ATTEMPTS = 5
RETRY_TIMEOUT_SECONDS = 30.0


class EventConsumer:
    """Applies each event delivery to its run, then acks; never lets one delivery crash it.

    `transient` lists the errors (the store's "try again later") retried with backoff
    before the delivery is given back to the broker.
    """

    def __init__(
        self,
        transport: Transport,
        runs: RunService,
        *,
        prefetch: int,
        transient: Sequence[type[Exception]] = (),
        metrics: Metrics | None = None,
    ) -> None:
        self._transport = transport
        self._runs = runs
        self._prefetch = prefetch
        self._transient = tuple(transient)
        self._metrics = metrics or Metrics()

    async def run(self) -> None:
        """Consume until cancelled, applying up to `prefetch` deliveries concurrently."""
        limiter = anyio.CapacityLimiter(self._prefetch)
        async with (
            self._transport.subscribe(EVENTS_CHANNEL, CONSUMER_GROUP, self._prefetch) as deliveries,
            anyio.create_task_group() as tg,
        ):
            async for delivery in deliveries:
                token = object()
                await limiter.acquire_on_behalf_of(token)
                tg.start_soon(self._handle_and_release, delivery, limiter, token)

    async def _handle_and_release(
        self, delivery: Delivery, limiter: anyio.CapacityLimiter, token: object
    ) -> None:
        try:
            await self.handle(delivery)
        except Exception:
            self._metrics.broker_error(self._transport.name, "consume")
            log.exception("settling an event delivery failed; the broker will redeliver it")
        finally:
            limiter.release_on_behalf_of(token)

    async def handle(self, delivery: Delivery) -> None:
        """Decode, apply and settle one delivery."""
        try:
            env = decode(delivery.message.body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("dead-lettering an undecodable event", reason=str(exc))
            await delivery.nack(requeue=False)
            return
        with bind_context(run_id=env.correlation_id):
            await self._apply_and_settle(delivery, env)

    async def _apply_and_settle(self, delivery: Delivery, env: Envelope) -> None:
        event = env.payload
        if isinstance(event, DispatchTask | CancelAttempts):
            log.warning("dead-lettering a worker command found on the events channel")
            await delivery.nack(requeue=False)
            return
        try:
            await self._apply_with_retries(event, env.traceparent)
        except RunNotFound:
            log.warning("dropping an event for an unknown run", event_type=env.event_type)
        except Exception:
            log.exception("applying an event failed; requeueing", event_type=env.event_type)
            await delivery.nack(requeue=True)
            return
        crash_point("after_decision_before_ack")
        await delivery.ack()

    async def decide_here(self, env: Envelope) -> bool:
        """Apply an event a worker of this process produced, as if it came off the events
        channel (`LocalEvents`); False when it could not be, so the worker publishes it.

        Tried once: a store that is away is waited for by the events consumer (with its
        retries), not by the worker's attempt slot.
        """
        event = env.payload
        if isinstance(event, DispatchTask | CancelAttempts):
            return False
        with bind_context(run_id=env.correlation_id):
            try:
                await self._apply(event, env.traceparent)
            except RunNotFound:
                log.warning("dropping an event for an unknown run", event_type=env.event_type)
            except Exception:
                log.exception("deciding an event here failed; publishing it instead")
                return False
        return True

    async def _apply_with_retries(self, event: WorkerEvent, traceparent: str | None) -> None:
        # The first try goes without stamina: setting up its retry context costs more CPU
        # than a whole decision's Python, and nearly every event succeeds at once.
        try:
            await self._apply(event, traceparent)
        except self._transient:  # an empty tuple catches nothing
            pass
        else:
            return
        async for attempt in stamina.retry_context(
            on=self._transient or _Never,
            attempts=RETRY_ATTEMPTS - 1,
            timeout=RETRY_TIMEOUT_SECONDS,
        ):
            with attempt:
                await self._apply(event, traceparent)

    async def _apply(self, event: WorkerEvent, traceparent: str | None) -> None:
        if isinstance(event, StartChildRun | CancelChildRun):
            await handle_child_command(self._runs, event, traceparent)
        else:  # a result carrying its start (a quick attempt's) is one event too
            await self._runs.apply_event(event.run_id, event, traceparent=traceparent)


class _Never(Exception):
    """Stands for 'retry nothing' when no transient errors are configured."""
