"""Eager dispatch: a dispatch decided in this process, run by this process's worker
without the broker round trip.

Before the decision pipeline writes a dispatch it asks `reserve`: when the queue is one
this worker serves, the handler is registered here and a slot is free, the dispatch's
outbox row is written leased instead of being published, and once the decision commits
`start` runs it in the worker as a delivery. Its ack marks the row sent; a nack publishes
it to the broker after all. While the attempt runs its lease is renewed; if the process
dies the lease runs out and any sweeper publishes the row, so the attempt runs again
elsewhere: at least once, as over the broker.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.abc
import msgspec

from treadle.domain.events import DispatchTask
from treadle.messages import TASKS_PREFIX, Envelope, Message, decode, delivered_once_more
from treadle.modules.worker._registry import HandlerRegistry
from treadle.observability import get_logger
from treadle.ports import EagerOutbox, OutboxRecord

log = get_logger(__name__)

RENEWALS_PER_LEASE = 3
"""How often a lease is renewed within its length (a missed renewal or two is survived)."""


class EagerSlot:
    """A worker slot held for one dispatch between its decision and its run."""

    __slots__ = ("env", "token")

    def __init__(self, env: Envelope, token: object) -> None:
        self.env = env
        self.token = token


class LocalDelivery:
    """A leased outbox row handed to the worker in memory (the `Delivery` port)."""

    def __init__(self, record: OutboxRecord, intake: EagerIntake) -> None:
        self._record = record
        self._intake = intake

    @property
    def message(self) -> Message:
        return self._record.message

    @property
    def delivery_count(self) -> int:
        return 1

    async def ack(self) -> None:
        await self._intake.settled(self._record)

    async def nack(self, *, requeue: bool = True) -> None:
        # Given back (or refused): the broker takes it from here, dead-lettering included.
        await self._intake.given_back(self._record)


Start = Callable[[LocalDelivery, Envelope, anyio.CapacityLimiter, object], None]


class EagerIntake:
    """The `EagerWorker` port of one worker: slots from its limiter, leases renewed."""

    def __init__(
        self,
        registry: HandlerRegistry,
        queues: list[str],
        outbox: EagerOutbox,
        *,
        lease_seconds: float,
    ) -> None:
        self.lease_seconds = lease_seconds
        self._registry = registry
        self._channels = {f"{TASKS_PREFIX}{queue}" for queue in queues}
        self._outbox = outbox
        self._limiter: anyio.CapacityLimiter | None = None
        self._start: Start | None = None
        self._leased: set[int] = set()

    def open(self, limiter: anyio.CapacityLimiter, start: Start) -> None:
        """Take dispatches from now on, within `limiter`, run by `start`."""
        self._limiter, self._start = limiter, start

    def close(self) -> None:
        """Take no more (the worker drains); those started still settle."""
        self._limiter = self._start = None

    def reserve(self, channel: str, message: Message) -> EagerSlot | None:
        limiter = self._limiter
        if limiter is None or channel not in self._channels:
            return None
        env = self._runnable(message)
        if env is None:
            return None
        token = object()
        try:
            limiter.acquire_on_behalf_of_nowait(token)
        except anyio.WouldBlock:
            return None
        return EagerSlot(env, token)

    def _runnable(self, message: Message) -> Envelope | None:
        """The dispatch's envelope when this worker can run it without a thread of its
        own (an async handler registered here, or an engine type such as `http`)."""
        try:
            env = decode(message.body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        dispatch = env.payload
        if not isinstance(dispatch, DispatchTask):
            return None
        if dispatch.task_type != "handler":
            return env
        registered = self._registry.get(dispatch.handler or "")
        return env if registered is not None and registered.is_async else None

    def release(self, slot: object) -> None:
        assert isinstance(slot, EagerSlot)
        if self._limiter is not None:
            self._limiter.release_on_behalf_of(slot.token)

    def start(self, slot: object, record: OutboxRecord) -> None:
        assert isinstance(slot, EagerSlot)
        limiter, start = self._limiter, self._start
        if limiter is None or start is None:  # closed since: the lease brings it back
            log.info("an eager dispatch is left to its lease", outbox_id=record.id)
            return
        self._leased.add(record.id)
        start(LocalDelivery(record, self), slot.env, limiter, slot.token)

    async def settled(self, record: OutboxRecord) -> None:
        self._leased.discard(record.id)
        await self._outbox.mark_done([record.id])

    async def given_back(self, record: OutboxRecord) -> None:
        self._leased.discard(record.id)
        # This delivery was the first: the broker's count starts from 1 again.
        message = delivered_once_more(record.message)
        await self._outbox.publish([msgspec.structs.replace(record, message=message)])

    async def renew(self) -> None:
        """Renew the leases of the attempts running here, until cancelled."""
        while True:
            await anyio.sleep(self.lease_seconds / RENEWALS_PER_LEASE)
            if not self._leased:
                continue
            try:
                await self._outbox.renew_leases(sorted(self._leased), self.lease_seconds)
            except Exception:
                # Not fatal: a lease that runs out only lets the attempt run twice.
                log.exception("renewing eager dispatch leases failed", rows=len(self._leased))
