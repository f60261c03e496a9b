"""Broadcast channels on Kafka: every subscription reads the whole topic from its end.

A subscription to a broadcast channel (`is_broadcast`) joins no consumer group: it assigns
itself every partition of the topic and starts at the end, so it sees each record
published from then on, as every other subscription does, and leaves no group or offset
behind. Nothing is committed: an ack only frees prefetch room; a requeue hands the record
out again (up to `max_deliveries`, then it goes to `dead`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any, Protocol

import anyio
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from treadle.messages import Message
from treadle.ports import Delivery
from treadle.transports import MAX_DELIVERIES, REJECTED

FETCH_MS = 500
METADATA_SECONDS = 30.0
Errors = Callable[[], AbstractContextManager[None]]
"""The transport's one place where driver errors become `TransportUnavailable`."""


class BroadcastOwner(Protocol):
    """What a broadcast subscription needs of the Kafka transport that opened it."""

    max_deliveries: int
    closed: bool

    async def dead_letter(self, message: Message, channel: str, reason: str) -> None:
        """Publish `message`, taken from `channel`, to `dead` with `reason`."""


class _BroadcastDelivery:
    """One record of a broadcast topic; settling it twice does nothing."""

    def __init__(self, reader: _BroadcastReader, message: Message, count: int) -> None:
        self._reader = reader
        self.message = message
        self.delivery_count = count
        self._settled = False

    async def ack(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._settle()

    async def nack(self, *, requeue: bool = True) -> None:
        if not self._settle():
            return
        if not requeue:
            await self._reader.dead_letter(self.message, REJECTED)
        elif self.delivery_count >= self._reader.max_deliveries:
            await self._reader.dead_letter(self.message, MAX_DELIVERIES)
        else:
            self._reader.again.append((self.message, self.delivery_count + 1))

    def _settle(self) -> bool:
        if self._settled:
            return False
        self._settled = True
        self._reader.unsettled -= 1
        self._reader.room.set()
        return True


class _BroadcastReader:
    """Hands out at most `prefetch` unsettled records of one broadcast topic at a time."""

    def __init__(
        self,
        transport: BroadcastOwner,
        channel: str,
        consumer: AIOKafkaConsumer,
        prefetch: int,
        errors: Errors,
    ) -> None:
        self._transport = transport
        self._errors = errors
        self._channel = channel
        self._consumer = consumer
        self._prefetch = prefetch
        self.max_deliveries = transport.max_deliveries
        self._buffer: deque[ConsumerRecord[Any, Any]] = deque()
        self.again: deque[tuple[Message, int]] = deque()
        self.unsettled = 0
        self.room = anyio.Event()

    def __aiter__(self) -> _BroadcastReader:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            if self._transport.closed:
                raise StopAsyncIteration
            if self.unsettled >= self._prefetch:
                self.room = anyio.Event()
                await self.room.wait()
                continue
            if self.again:
                message, count = self.again.popleft()
                return self._hand_out(message, count)
            if self._buffer:
                record = self._buffer.popleft()
                return self._hand_out(*_record_message(record))
            with self._errors():
                batch = await self._consumer.getmany(
                    timeout_ms=FETCH_MS, max_records=self._prefetch
                )
            for records in batch.values():
                self._buffer.extend(records)

    def _hand_out(self, message: Message, count: int) -> _BroadcastDelivery:
        self.unsettled += 1
        return _BroadcastDelivery(self, message, count)

    async def dead_letter(self, message: Message, reason: str) -> None:
        await self._transport.dead_letter(message, self._channel, reason)


def _record_message(record: ConsumerRecord[Any, Any]) -> tuple[Message, int]:
    headers = {name: value.decode(errors="replace") for name, value in record.headers}
    key = record.key.decode(errors="replace") if record.key else ""
    return Message(key=key, body=record.value or b"", headers=headers), 1


@asynccontextmanager
async def broadcast_subscription(
    transport: BroadcastOwner,
    channel: str,
    topic: str,
    *,
    client: dict[str, Any],
    prefetch: int,
    errors: Errors,
) -> AsyncIterator[AsyncIterator[Delivery]]:
    """Read `topic` from its current end on every partition, in no group (see above)."""
    consumer = AIOKafkaConsumer(
        **client, group_id=None, enable_auto_commit=False, auto_offset_reset="latest"
    )
    try:
        with errors():
            await consumer.start()
            partitions = await _partitions(consumer, topic)
            consumer.assign(partitions)
            await consumer.seek_to_end(*partitions)
            for partition in partitions:
                await consumer.position(partition)  # resolved now: live on entry
        yield _BroadcastReader(transport, channel, consumer, prefetch, errors)
    finally:
        with anyio.CancelScope(shield=True), errors():
            await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """Every partition of `topic`, once the client's metadata knows the (new) topic."""
    with anyio.fail_after(METADATA_SECONDS):
        while True:
            await consumer.topics()  # refreshes the client's metadata
            found = consumer.partitions_for_topic(topic)
            if found:
                return [TopicPartition(topic, p) for p in sorted(found)]
            await anyio.sleep(0.1)
