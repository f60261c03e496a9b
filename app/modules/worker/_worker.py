"""The worker role: consume dispatches, run handlers, publish results, then ack."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import anyio
import msgspec

from app.config import WorkerSettings
from app.domain.events import DispatchTask, TaskHeartbeat, TaskStarted
from app.messages import EVENTS_CHANNEL, Payload, decode, envelope, tasks_channel, to_message
from app.modules.worker._context import TaskContext
from app.modules.worker._execute import execute
from app.modules.worker._registry import HandlerRegistry
from app.ports import Clock, Delivery, Transport

log = logging.getLogger(__name__)

CONSUMER_GROUP = "workers"


class Worker:
    """Runs task attempts from the configured queues, at most `concurrency` at a time.

    Cancel `run()` to stop: it stops taking deliveries, gives in-flight attempts up to
    `drain_seconds` to finish (their results are published and acked), then cancels the
    rest without acking, so the broker hands them to another worker.
    """

    def __init__(
        self,
        transport: Transport,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        clock: Clock,
        source: str,
    ) -> None:
        self._transport = transport
        self._registry = registry
        self._settings = settings
        self._clock = clock
        self._source = source
        self._inflight = 0
        self._idle: anyio.Event | None = None
        self._intakes: list[anyio.CancelScope] = []
        self._attempt_groups: list[anyio.abc.TaskGroup] = []

    @property
    def inflight(self) -> int:
        """How many attempts are running now."""
        return self._inflight

    async def run(self) -> None:
        """Consume until cancelled, then drain (see the class docstring)."""
        self._idle = anyio.Event()
        limiter = anyio.CapacityLimiter(self._settings.concurrency)
        queues = list(dict.fromkeys(self._settings.queues))
        log.info(
            "worker %s consuming %s, handlers: %s", self._source, queues, self._registry.names()
        )
        async with anyio.create_task_group() as consumers:
            for queue in queues:
                consumers.start_soon(self._consume_queue, queue, limiter)
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._drain()

    async def _drain(self) -> None:
        for intake in self._intakes:
            intake.cancel()
        with anyio.move_on_after(self._settings.drain_seconds):
            while self._inflight:
                await self._wait_idle()
        if self._inflight:
            log.warning(
                "worker %s cancels %d attempts after draining", self._source, self._inflight
            )
        for attempts in self._attempt_groups:
            attempts.cancel_scope.cancel()

    async def _wait_idle(self) -> None:
        assert self._idle is not None
        await self._idle.wait()
        self._idle = anyio.Event()

    async def _consume_queue(self, queue: str, limiter: anyio.CapacityLimiter) -> None:
        # Shielded so that cancelling `run()` does not tear the subscription down under
        # in-flight attempts: they still need it to ack. `_drain` ends it in order.
        with anyio.CancelScope(shield=True):
            prefetch = self._settings.concurrency
            channel = tasks_channel(queue)
            async with (
                self._transport.subscribe(channel, CONSUMER_GROUP, prefetch) as deliveries,
                anyio.create_task_group() as attempts,
            ):
                self._attempt_groups.append(attempts)
                with anyio.CancelScope() as intake:
                    self._intakes.append(intake)
                    await self._take(deliveries, attempts, limiter)

    async def _take(
        self,
        deliveries: AsyncIterator[Delivery],
        attempts: anyio.abc.TaskGroup,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        async for delivery in deliveries:
            token = object()
            # Waiting here, with prefetch == concurrency, keeps the backlog in the broker.
            await limiter.acquire_on_behalf_of(token)
            self._inflight += 1
            attempts.start_soon(self._attempt, delivery, limiter, token)

    async def _attempt(
        self, delivery: Delivery, limiter: anyio.CapacityLimiter, token: object
    ) -> None:
        try:
            await self.process(delivery)
        finally:
            limiter.release_on_behalf_of(token)
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery from start to ack (or nack)."""
        decoded = _decode_dispatch(delivery)
        if decoded is None:
            await delivery.nack(requeue=False)
            return
        dispatch, traceparent = decoded
        ctx = TaskContext.for_attempt(
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            workflow=dispatch.workflow,
            version=dispatch.version,
            idempotency_key=dispatch.idempotency_key,
            heartbeat=lambda details: self._publish(
                TaskHeartbeat(
                    run_id=dispatch.run_id,
                    task_id=dispatch.task_id,
                    attempt=dispatch.attempt,
                    details=details,
                ),
                traceparent,
            ),
        )
        try:
            started = TaskStarted(
                run_id=dispatch.run_id,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                worker=self._source,
                started_at=self._clock.now(),
            )
            await self._publish(started, traceparent)
            result = await execute(
                dispatch,
                ctx,
                self._registry,
                worker=self._source,
                traceback_lines=self._settings.traceback_lines,
            )
            await self._publish(result, traceparent)
        except Exception:
            # The result could not be published: give the dispatch back so the attempt is
            # run again (at least once) rather than lost.
            log.exception(
                "publishing the result of %s/%s#%d failed; requeueing",
                dispatch.run_id,
                dispatch.task_id,
                dispatch.attempt,
            )
            await _settle_quietly(delivery, requeue=True)
            return
        await delivery.ack()

    async def _publish(self, payload: Payload, traceparent: str | None) -> None:
        message = to_message(envelope(payload, source=self._source, traceparent=traceparent))
        await self._transport.publish(EVENTS_CHANNEL, [message])


def _decode_dispatch(delivery: Delivery) -> tuple[DispatchTask, str | None] | None:
    """The dispatch and its trace context, or None for a poison message."""
    try:
        env = decode(delivery.message.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("dead-lettering an undecodable task message: %s", exc)
        return None
    if not isinstance(env.payload, DispatchTask):
        log.warning("dead-lettering a %s message found on a task channel", env.event_type)
        return None
    return env.payload, env.traceparent


async def _settle_quietly(delivery: Delivery, *, requeue: bool) -> None:
    try:
        await delivery.nack(requeue=requeue)
    except Exception:
        log.exception("nack failed; the broker will redeliver after its own timeout")
