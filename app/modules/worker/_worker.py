"""The worker role: consume dispatches, run handlers, publish results, then ack."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec

from treadle.config import HttpSettings, TransportSettings, WorkerSettings
from treadle.domain.events import (
    DispatchTask,
    TaskCompleted,
    TaskFailed,
    TaskHeartbeat,
    TaskStarted,
)
from treadle.domain.state import ErrorInfo
from treadle.messages import (
    EVENTS_CHANNEL,
    Envelope,
    Payload,
    decode,
    earlier_deliveries,
    envelope,
    tasks_channel,
    to_message,
)
from treadle.modules.worker._cancel import RunningAttempts, listen_for_cancels
from treadle.modules.worker._context import AttemptControl, TaskContext, heartbeat_interval
from treadle.modules.worker._eager import EagerIntake
from treadle.modules.worker._execute import DEFAULT_MAX_OUTPUT_BYTES, execute, failed_attempt
from treadle.modules.worker._http import HttpExecutor
from treadle.modules.worker._presence import Presence
from treadle.modules.worker._registry import HandlerRegistry
from treadle.modules.worker._secrets import redact_error
from treadle.modules.worker._start_report import START_REPORT_SECONDS, StartReport
from treadle.modules.worker._threads import SyncSlot, SyncThreads
from treadle.observability import Telemetry, current_traceparent, get_logger
from treadle.ports import (
    Clock,
    Delivery,
    DeliveryCounter,
    EagerOutbox,
    LocalEvents,
    Transport,
    WorkerRegistry,
)
from treadle.testing.crash import crash_point

log = get_logger(__name__)

CONSUMER_GROUP = "workers"
ATTEMPT_LOST = "AttemptLost"
"""The error of an attempt refused after `worker.lost_after_deliveries` deliveries."""


class Worker:
    """Runs task attempts from the configured queues, at most `concurrency` at a time.

    Cancel `run()` to stop: it stops taking deliveries, gives in-flight attempts up to
    `drain_seconds` to finish (their results are published and acked), then cancels the
    rest without acking, so the broker hands them to another worker.

    Meanwhile it listens for `task.cancel` and stops the attempts named (see `_cancel`).

    Sync handlers run in threads bounded by `sync_threads` (`worker.max_sync_threads`,
    see `_threads`): while all are held, the worker takes no deliveries (they stay on the
    broker); a delivery for one waits for a free thread before its attempt starts.
    """

    def __init__(
        self,
        transport: Transport,
        registry: HandlerRegistry,
        settings: WorkerSettings,
        clock: Clock,
        source: str,
        *,
        http: HttpExecutor | None = None,
        telemetry: Telemetry | None = None,
        max_deliveries: int | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
        sync_threads: SyncThreads | None = None,
        deliveries: DeliveryCounter | None = None,
        local_events: LocalEvents | None = None,
        eager_outbox: EagerOutbox | None = None,
        presence: WorkerRegistry | None = None,
    ) -> None:
        # Public: the engine hands the same telemetry to this worker's `http` executor.
        self.telemetry = telemetry or Telemetry.off("worker")
        self._transport = transport
        # `http` tasks share one client per worker; a bare worker gets default settings.
        self._http = http or HttpExecutor(HttpSettings(), telemetry=self.telemetry)
        self._registry = registry
        self._settings = settings
        # The last delivery this worker runs: the transport's `max_deliveries`, or the one
        # before `lost_after_deliveries` (a later one is reported lost, not run). On it a
        # result that cannot be published is replaced by a failure that can (see
        # `_report_unpublished`).
        self._max_deliveries = min(
            max_deliveries or TransportSettings().max_deliveries,
            settings.lost_after_deliveries - 1,
        )
        self._max_output_bytes = max_output_bytes  # limits.max_output_bytes
        # Counts each delivery in the store before it runs, for a transport that does not
        # count the deliveries its dead consumers held (see `Transport.COUNTS_LOST_DELIVERIES`).
        self._deliveries = deliveries
        # This process's orchestrator, when it runs one: attempts' events are decided
        # through it instead of crossing the broker (`worker.decide_locally`).
        self._local_events = local_events
        self.eager: EagerIntake | None = None
        """Takes the dispatches this process decides, without the broker (`worker.eager`)."""
        if eager_outbox is not None and settings.eager:
            self.eager = EagerIntake(
                registry,
                list(dict.fromkeys(settings.queues)),
                eager_outbox,
                lease_seconds=settings.eager_lease_seconds,
            )
        # Where the worker reports itself every `worker.report_interval_seconds` (the
        # dashboard's workers page); None: it does not.
        self._presence = presence
        # Redacted from every failure this worker reports, and so from its log lines.
        self._secrets = self._http.known_secrets()
        self._clock = clock
        self._source = source
        self._inflight = 0
        self._idle: anyio.Event | None = None
        self._intakes: list[anyio.CancelScope] = []
        self._attempt_groups: list[anyio.abc.TaskGroup] = []
        self.running = RunningAttempts()
        """The attempts in flight here, which a `task.cancel` can stop."""
        self._listening = anyio.CancelScope()
        # Public: the engine's readiness check reads it (the threads outlive attempts).
        self.sync_threads = sync_threads or SyncThreads(
            settings.max_sync_threads, self.telemetry.metrics
        )

    @property
    def inflight(self) -> int:
        """How many attempts are running now."""
        return self._inflight

    async def run(self) -> None:
        """Consume until cancelled, then drain (see the class docstring)."""
        self._idle = anyio.Event()
        limiter = anyio.CapacityLimiter(self._settings.concurrency)
        self.telemetry.metrics.set_worker_concurrency(self._settings.concurrency)
        queues = list(dict.fromkeys(self._settings.queues))
        log.info(
            "worker consuming",
            worker=self._source,
            queues=queues,
            handlers=self._registry.names(),
        )
        async with anyio.create_task_group() as consumers:
            await consumers.start(self.sync_threads.serve)
            for queue in queues:
                consumers.start_soon(self._consume_queue, queue, limiter)
            if self.eager is not None:
                consumers.start_soon(self._take_eagerly, self.eager, limiter)
            consumers.start_soon(self._listen_for_cancels)
            if self._presence is not None:
                consumers.start_soon(self._presence_of(queues).serve)
            try:
                await anyio.sleep_forever()
            finally:
                with anyio.CancelScope(shield=True):
                    await self._drain()
                    await self._http.aclose()

    def _presence_of(self, queues: list[str]) -> Presence:
        assert self._presence is not None
        return Presence(
            self._presence,
            self._clock,
            self._source,
            self._settings.report_interval_seconds,
            queues=queues,
            handlers=self._registry.names(),
            concurrency=self._settings.concurrency,
            inflight=lambda: self._inflight,
        )

    async def _drain(self) -> None:
        for intake in self._intakes:
            intake.cancel()
        with anyio.move_on_after(self._settings.drain_seconds):
            while self._inflight:
                await self._wait_idle()
        if self._inflight:
            log.warning(
                "worker cancels attempts left after draining",
                worker=self._source,
                attempts=self._inflight,
            )
        for attempts in self._attempt_groups:
            attempts.cancel_scope.cancel()
        self._listening.cancel()
        self.sync_threads.stop()  # handlers still running are abandoned with the process

    async def _listen_for_cancels(self) -> None:
        # Shielded like the queues: a cancel must still reach attempts while they drain.
        with anyio.CancelScope(shield=True), self._listening:
            try:
                await listen_for_cancels(self._transport, self.running, f"worker.{self._source}")
            except Exception:
                # Not fatal: results of cancelled attempts are stale and ignored anyway.
                self.telemetry.metrics.broker_error(self._transport.name, "consume")
                log.exception("the worker stopped listening for cancels")

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

    async def _take_eagerly(self, eager: EagerIntake, limiter: anyio.CapacityLimiter) -> None:
        """Run the dispatches this process's decisions hand over (see `_eager`), within
        the same limiter as the queues; shielded and drained like them."""
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as attempts:
                self._attempt_groups.append(attempts)  # `_drain` ends it, renewals too
                attempts.start_soon(eager.renew)

                def start(
                    delivery: Delivery, env: Envelope, limiter: anyio.CapacityLimiter, token: object
                ) -> None:
                    self._inflight += 1
                    attempts.start_soon(self._attempt, delivery, env, None, limiter, token)

                eager.open(limiter, start)
                with anyio.CancelScope() as intake:
                    self._intakes.append(intake)
                    try:
                        await anyio.sleep_forever()
                    finally:
                        eager.close()

    async def _take(
        self,
        deliveries: AsyncIterator[Delivery],
        attempts: anyio.abc.TaskGroup,
        limiter: anyio.CapacityLimiter,
    ) -> None:
        incoming = aiter(deliveries)
        while True:
            # With every sync thread held, take nothing: which handler a delivery needs is
            # known only once taken, and a sync one could then only wait here, in hand.
            await self.sync_threads.wait_for_room()
            try:
                delivery = await anext(incoming)
            except StopAsyncIteration:
                return
            token = object()
            # Waiting here, with prefetch == concurrency, keeps the backlog in the broker.
            await limiter.acquire_on_behalf_of(token)
            try:
                env = _decode_dispatch(delivery)
                slot = await self._reserve_thread(env)
            except BaseException:
                limiter.release_on_behalf_of(token)
                raise
            self._inflight += 1
            attempts.start_soon(self._attempt, delivery, env, slot, limiter, token)

    async def _reserve_thread(self, env: Envelope | None) -> SyncSlot | None:
        """A thread for a dispatch of a sync handler (None for any other); waited for,
        this queue taking nothing meanwhile, only when another queue took the last one."""
        dispatch = None if env is None else env.payload
        if not isinstance(dispatch, DispatchTask) or dispatch.task_type != "handler":
            return None
        registered = self._registry.get(dispatch.handler or "")
        if registered is None or registered.is_async:
            return None
        return await self.sync_threads.reserve()

    async def _attempt(
        self,
        delivery: Delivery,
        env: Envelope | None,
        slot: SyncSlot | None,
        limiter: anyio.CapacityLimiter,
        token: object,
    ) -> None:
        try:
            await self._process(delivery, env, slot)
        finally:
            if slot is not None:
                slot.release_unused()
            limiter.release_on_behalf_of(token)
            self._inflight -= 1
            if self._inflight == 0 and self._idle is not None:
                self._idle.set()

    async def process(self, delivery: Delivery) -> None:
        """Handle one delivery from start to ack (or nack), outside `run()`: a sync handler
        runs on anyio's default thread limiter, not within `worker.max_sync_threads`."""
        await self._process(delivery, _decode_dispatch(delivery), None)

    async def _process(
        self, delivery: Delivery, env: Envelope | None, slot: SyncSlot | None
    ) -> None:
        """`process`, `env` being the delivery's dispatch as `_decode_dispatch` read it
        (None: poison); a sync handler runs in `slot` (see `_reserve_thread`)."""
        if env is None:
            await delivery.nack(requeue=False)
            return
        assert isinstance(env.payload, DispatchTask), "checked by _decode_dispatch"
        dispatch = env.payload
        # The broker's count leaves out deliveries made before it had the message (eager
        # ones, see `delivered_once_more`); the store's count has every delivery.
        counted = await self._count_delivery(dispatch)
        delivery_count = max(
            earlier_deliveries(delivery.message) + delivery.delivery_count, counted
        )
        deliveries = max(delivery_count, dispatch.delivery)
        if deliveries >= self._settings.lost_after_deliveries:
            await self._report_lost(delivery, dispatch, deliveries, env.traceparent)
            return
        if self.running.cancelled_before(dispatch, env.timestamp):
            log.info(
                "skipping an attempt cancelled before it was delivered",
                run_id=dispatch.run_id,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
            )
            await delivery.ack()
            return
        with self.telemetry.task_execution(
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            task_type=dispatch.task_type,
            handler=dispatch.handler,
            workflow=dispatch.workflow,
            traceparent=env.traceparent,
            dispatched_at=env.timestamp,
        ):
            published = await self._execute_and_publish(
                dispatch, env.traceparent, delivery_count, slot
            )
        if published:
            crash_point("after_publish_before_ack")
            await delivery.ack()
        else:
            await _settle_quietly(delivery, requeue=True)

    async def _count_delivery(self, dispatch: DispatchTask) -> int:
        """This delivery's number by the store's count; 0 without a counter.

        If the store cannot count it, the attempt runs uncounted (logged): refusing work
        while the database is away would stop every attempt for a risk only some carry.
        """
        if self._deliveries is None:
            return 0
        try:
            return await self._deliveries.count_delivery(
                dispatch.run_id, dispatch.task_id, dispatch.attempt, dispatch.item
            )
        except Exception:
            log.exception(
                "counting the delivery in the store failed; running it uncounted",
                run_id=dispatch.run_id,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
            )
            return 0

    async def _report_lost(
        self, delivery: Delivery, dispatch: DispatchTask, deliveries: int, received: str | None
    ) -> None:
        """Fail, without running it, an attempt whose earlier deliveries never finished.

        Each of those may have ended the process running it (`os._exit`, the OOM killer, a
        segfault); running it again could do so once more, for ever. The failure follows
        the task's retry policy. If publishing it fails, the delivery goes back (counted).
        """
        error = ErrorInfo(
            type=ATTEMPT_LOST,
            message=(
                f"attempt {dispatch.attempt} was delivered {deliveries} times and never"
                " finished: the process running it ended"
            ),
            retryable=True,
        )
        failed = failed_attempt(dispatch, self._source, error)
        log.warning(
            "not running an attempt whose earlier deliveries never finished",
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            item=dispatch.item,
            deliveries=deliveries,
        )
        try:
            await self._publish(failed, received)
        except Exception:
            self.telemetry.metrics.broker_error(self._transport.name, "publish")
            log.exception("publishing a lost attempt's failure failed; requeueing")
            await _settle_quietly(delivery, requeue=True)
            return
        await delivery.ack()

    async def _execute_and_publish(
        self,
        dispatch: DispatchTask,
        received: str | None,
        delivery_count: int,
        slot: SyncSlot | None,
    ) -> bool:
        """Run the attempt and publish its events; False when publishing failed.

        Called inside the attempt's span, so every event published carries its context.
        """
        started = TaskStarted(
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            worker=self._source,
            started_at=self._clock.now(),
            item=dispatch.item,
        )
        start = StartReport(started, lambda p: self._publish(p, received))

        async def heartbeat(details: Any) -> None:
            await start.send()  # a heartbeat never overtakes its attempt's start
            beat = TaskHeartbeat(
                run_id=dispatch.run_id,
                task_id=dispatch.task_id,
                attempt=dispatch.attempt,
                details=details,
                item=dispatch.item,
            )
            await self._publish(beat, received)

        control = AttemptControl(heartbeat, heartbeat_interval(dispatch.heartbeat_timeout_seconds))
        ctx = TaskContext.for_attempt(
            run_id=dispatch.run_id,
            task_id=dispatch.task_id,
            attempt=dispatch.attempt,
            workflow=dispatch.workflow,
            version=dispatch.version,
            idempotency_key=dispatch.idempotency_key,
            control=control,
        )
        began = time.perf_counter()
        try:
            with self.running.running(dispatch, control) as attempt:
                result = await self._execute_reporting_start(dispatch, ctx, start, control, slot)
            if attempt.cancelled_caught:
                # The run no longer waits for it: nothing to report, the dispatch is done.
                log.info("attempt cancelled")
                return True
        except Exception:
            # Only publishing the start can raise here (`execute` turns every failure of
            # the attempt itself into a TaskFailed): give the dispatch back.
            self.telemetry.metrics.broker_error(self._transport.name, "publish")
            log.exception("publishing the attempt's start failed; requeueing")
            return False
        _log_result(result, dispatch, time.perf_counter() - began)
        crash_point("after_effect_before_publish")
        try:
            await start.send_result(result)
        except Exception as exc:
            self.telemetry.metrics.broker_error(self._transport.name, "publish")
            if delivery_count < self._max_deliveries:
                # Give the dispatch back so the attempt is run again (at least once)
                # rather than lost.
                log.exception("publishing the attempt's result failed; requeueing")
                return False
            return await self._report_unpublished(start, result, exc, delivery_count)
        return True

    async def _report_unpublished(
        self,
        start: StartReport,
        result: TaskCompleted | TaskFailed,
        exc: Exception,
        delivery_count: int,
    ) -> bool:
        """On the last delivery the transport allows, publish a small failure in place
        of a result that cannot be published (too large for the broker, say), so the
        attempt ends recorded instead of its dispatch being dead-lettered unseen."""
        failure = TaskFailed(
            run_id=result.run_id,
            task_id=result.task_id,
            attempt=result.attempt,
            error=redact_error(
                ErrorInfo(
                    type="ResultNotPublished",
                    message=(
                        f"the attempt's result could not be published in {delivery_count} "
                        f"deliveries: {type(exc).__name__}: {exc}"
                    ),
                    retryable=True,
                ),
                self._secrets,
            ),
            worker=result.worker,
            item=result.item,
        )
        try:
            await start.send_result(failure)
        except Exception:
            log.exception("publishing the attempt's result failed on its last delivery")
            return False
        log.warning(
            "published ResultNotPublished in place of the attempt's result",
            error_type="ResultNotPublished",
            error=failure.error.message,
        )
        return True

    async def _execute_reporting_start(
        self,
        dispatch: DispatchTask,
        ctx: TaskContext,
        start: StartReport,
        control: AttemptControl,
        slot: SyncSlot | None,
    ) -> TaskCompleted | TaskFailed:
        """Run the attempt; its start is published once it has run `START_REPORT_SECONDS`
        (a quicker one's start goes out with its result, in one publish)."""
        outcome: list[TaskCompleted | TaskFailed] = []
        finished = anyio.Event()

        async def run() -> None:
            try:
                outcome.append(
                    await execute(
                        dispatch,
                        ctx,
                        self._registry,
                        worker=self._source,
                        traceback_lines=self._settings.traceback_lines,
                        http=self._http,
                        max_output_bytes=self._max_output_bytes,
                        secrets=self._secrets,
                        run_sync=None if slot is None else slot.run_sync,
                    )
                )
            finally:
                finished.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            tg.start_soon(control.send_heartbeats)
            with anyio.move_on_after(START_REPORT_SECONDS):
                await finished.wait()
            if not finished.is_set():
                await start.send()
            await finished.wait()
            tg.cancel_scope.cancel()  # the attempt is over: so are its heartbeats
        return outcome[0]

    def _envelope(self, payload: Payload, received: str | None) -> Envelope:
        # The current span (the attempt's) becomes the parent of the decision it causes;
        # with tracing off there is none, and the context received passes through as is.
        traceparent = current_traceparent() or received
        return envelope(payload, source=self._source, traceparent=traceparent)

    async def _publish(self, payload: Payload, received: str | None) -> None:
        """Report an event of an attempt: decided here when this process decides (no
        broker round trip), else, or when that fails, on the events channel."""
        env = self._envelope(payload, received)
        if self._local_events is not None and await self._local_events.decide_here(env):
            return
        await self._transport.publish(EVENTS_CHANNEL, [to_message(env)])


def _log_result(result: TaskCompleted | TaskFailed, dispatch: DispatchTask, seconds: float) -> None:
    # Inside the attempt's span and log context: the line carries run, task and attempt.
    facts = {
        "task_type": dispatch.task_type,
        "handler": dispatch.handler,  # None for the engine's own types (http)
        "item": dispatch.item,
        "duration_ms": round(seconds * 1000, 1),
    }
    known = {key: value for key, value in facts.items() if value is not None}
    if isinstance(result, TaskFailed):
        log.warning(
            "attempt failed", error_type=result.error.type, error=result.error.message, **known
        )
    else:
        log.info("attempt completed", **known)


def _decode_dispatch(delivery: Delivery) -> Envelope | None:
    """The envelope of a dispatch (trace context, dispatch time), or None for poison."""
    try:
        env = decode(delivery.message.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("dead-lettering an undecodable task message", reason=str(exc))
        return None
    if not isinstance(env.payload, DispatchTask):
        log.warning("dead-lettering a message found on a task channel", event_type=env.event_type)
        return None
    return env


async def _settle_quietly(delivery: Delivery, *, requeue: bool) -> None:
    try:
        await delivery.nack(requeue=requeue)
    except Exception:
        log.exception("nack failed; the broker will redeliver after its own timeout")
