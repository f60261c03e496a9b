"""Kafka transport (aiokafka): a topic per channel, consumer groups, offsets as acks.

Layout: channel `tasks.default` is topic `<namespace>.tasks.default`, created on first
use with `settings.partitions` partitions; group `workers` on it is the Kafka consumer
group `<namespace>.tasks.default.workers`. A message's key (the run id) picks its
partition, so one run's messages keep their order (`ORDERED_PER_KEY`).

Acks are offsets. A partition's committed offset means "everything before it is done",
so a consumer may commit only up to its lowest unsettled delivery: `_PartitionLedger`
tracks the offsets handed out and commits the highest contiguous settled offset + 1.
A slow message therefore holds back the commit of later, finished ones; after a crash
those are delivered again (at-least-once), never skipped.

A rebalance takes every partition back before handing them out again. Deliveries still
out on a revoked partition go stale: settling them does nothing and they no longer count
against `prefetch`, because the partition's next owner, perhaps the same member, reads
them again from the committed offset. A dropped connection alone changes nothing: the
group member outlives it if the client reconnects within the session timeout.

Kafka cannot requeue one message. `nack(requeue=True)` publishes a copy to the end of
the same topic with `x-treadle-delivery-count` raised by one and settles the original,
so the partition moves on. The cost: a requeued message loses its place among its
key's messages. A subscription that closes gives its unsettled records back the same
way, so a message whose consumers keep leaving still reaches `dead`. A process killed
outright cannot: its uncommitted records come back to the group with their old count
(`COUNTS_LOST_DELIVERIES` is False, so workers count their deliveries in the database).

A broadcast channel (`is_broadcast`) is read in no group at all; see `_kafka_broadcast`.

Tansu (the broker the tests run) has no idempotent producer; `kafka_idempotence`
turns it off there.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, ClassVar

import anyio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError, for_code

from treadle._tls import ssl_context
from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, Message, is_broadcast
from treadle.observability import get_logger
from treadle.ports import Delivery
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED
from treadle.transports._errors import TransportUnavailable
from treadle.transports._kafka_broadcast import broadcast_subscription
from treadle.transports._tls import kafka_client_kwargs

log = get_logger(__name__)

DEFAULT_URL = "127.0.0.1:9092"
COUNT_HEADER = "x-treadle-delivery-count"
"""Deliveries so far of a requeued copy; internal, hidden from readers."""
FETCH_MS = 500
JOIN_SECONDS = 60.0
CLOSE_SECONDS = 30.0
_TOPIC_EXISTS = TopicAlreadyExistsError.errno


@contextmanager
def _driver_errors(url: str) -> Iterator[None]:
    """The one place aiokafka errors (and socket errors) become `TransportUnavailable`."""
    try:
        yield
    except (KafkaError, OSError, TimeoutError) as exc:
        raise TransportUnavailable(url, str(exc) or type(exc).__name__) from exc


def _bootstrap(url: str) -> list[str]:
    """`kafka://h1:9092,h2:9092` (or without the scheme) as aiokafka's server list."""
    hosts = url.removeprefix("kafka://").strip("/")
    return [host.strip() for host in hosts.split(",") if host.strip()] or [DEFAULT_URL]


class _PartitionLedger:
    """The offsets of one partition handed out to the application, and which are done."""

    def __init__(self) -> None:
        self._outstanding: deque[int] = deque()
        self._done: set[int] = set()
        self.safe: int | None = None
        """Offset to commit: every offset below it is settled."""

    def track(self, offset: int) -> None:
        self._outstanding.append(offset)

    def settle(self, offset: int) -> bool:
        """Mark an offset done; True if that moved the safe commit point."""
        self._done.add(offset)
        moved = False
        while self._outstanding and self._outstanding[0] in self._done:
            self._done.discard(self._outstanding[0])
            self.safe = self._outstanding.popleft() + 1
            moved = True
        return moved


class _KafkaDelivery:
    """One record; the first ack/nack settles it, later ones (or after a rebalance) do
    nothing to offsets."""

    def __init__(self, subscription: _Subscription, record: ConsumerRecord[Any, Any]) -> None:
        self._subscription = subscription
        self.partition = TopicPartition(record.topic, record.partition)
        self.offset: int = record.offset
        self.ledger = subscription.ledger(self.partition)
        self.message, self.delivery_count = _to_message(record)

    async def ack(self) -> None:
        if self._subscription.settle(self):
            await self._subscription.commit(self.partition)

    async def nack(self, *, requeue: bool = True) -> None:
        if not self._subscription.holds(self):
            return
        await self._write_copy(requeue=requeue)
        if self._subscription.settle(self):
            await self._subscription.commit(self.partition)

    async def give_back(self) -> None:
        """Requeue as a closing subscription does; the caller commits afterwards."""
        await self._write_copy(requeue=True)
        self._subscription.settle(self)

    async def _write_copy(self, *, requeue: bool) -> None:
        # The copy is written before the original is settled: if writing fails, the
        # original stays unsettled and its offset cannot be committed past.
        transport, channel = self._subscription.transport, self._subscription.channel
        if not requeue:
            await transport.dead_letter(self.message, channel, REJECTED)
        elif self.delivery_count >= transport.max_deliveries:
            await transport.dead_letter(self.message, channel, MAX_DELIVERIES)
        else:
            await transport.requeue(channel, self.message, self.delivery_count)


def _to_message(record: ConsumerRecord[Any, Any]) -> tuple[Message, int]:
    headers = {name: value.decode(errors="replace") for name, value in record.headers}
    count = int(headers.pop(COUNT_HEADER, "0")) + 1
    key = record.key.decode(errors="replace") if record.key else ""
    return Message(key=key, body=record.value or b"", headers=headers), count


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base
    """Commits what is safely done before partitions move, then forgets them."""

    def __init__(self, subscription: _Subscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._subscription.revoke(revoked)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.debug("kafka partitions assigned", partitions=[str(p) for p in assigned])
        self._subscription.joined.set()


class _Subscription:
    """One group member: hands out at most `prefetch` unsettled records at a time."""

    def __init__(self, transport: KafkaTransport, channel: str, prefetch: int) -> None:
        self.transport = transport
        self.channel = channel
        self._prefetch = prefetch
        self.consumer: AIOKafkaConsumer | None = None
        self._ledgers: dict[TopicPartition, _PartitionLedger] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._buffer: deque[ConsumerRecord[Any, Any]] = deque()
        self._unsettled: set[_KafkaDelivery] = set()
        self._settled = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._closed = False
        self.joined = asyncio.Event()
        """Set once the group has given this member its (possibly empty) assignment."""

    def ledger(self, partition: TopicPartition) -> _PartitionLedger:
        ledger = self._ledgers.get(partition)
        if ledger is None:
            ledger = self._ledgers[partition] = _PartitionLedger()
        return ledger

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Delivery:
        # A class, not an async generator, so a cancelled wait leaves it usable.
        while True:
            if self._closed or self.transport.closed or self.consumer is None:
                raise StopAsyncIteration
            if self._buffer:
                delivery = _KafkaDelivery(self, self._buffer.popleft())
                delivery.ledger.track(delivery.offset)
                self._unsettled.add(delivery)
                return delivery
            if len(self._unsettled) >= self._prefetch:
                self._settled.clear()
                await self._settled.wait()
                continue
            room = self._prefetch - len(self._unsettled)
            with _driver_errors(self.transport.url):
                batch = await self.consumer.getmany(timeout_ms=FETCH_MS, max_records=room)
            for records in batch.values():
                self._buffer.extend(records)

    def holds(self, delivery: _KafkaDelivery) -> bool:
        """Whether the delivery is still this open subscription's to settle."""
        return not self._closed and delivery in self._unsettled

    def settle(self, delivery: _KafkaDelivery) -> bool:
        """Record a settle; False if already settled or given back on close."""
        if delivery not in self._unsettled:
            return False
        self._unsettled.discard(delivery)
        self._settled.set()
        # A ledger replaced by a rebalance is stale: its partition's offsets are the
        # new owner's now, and this message will be delivered to that owner again.
        if self._ledgers.get(delivery.partition) is delivery.ledger:
            delivery.ledger.settle(delivery.offset)
        return True

    async def commit(self, partition: TopicPartition) -> None:
        """Commit the partition's safe offset if it moved past the last commit."""
        async with self._commit_lock:
            await self._commit(partition)

    async def _commit(self, partition: TopicPartition) -> None:
        ledger = self._ledgers.get(partition)
        if ledger is None or ledger.safe is None or self.consumer is None:
            return
        if ledger.safe <= self._committed.get(partition, -1):
            return
        try:
            with _driver_errors(self.transport.url):
                await self.consumer.commit({partition: ledger.safe})
        except TransportUnavailable as exc:
            if not isinstance(exc.__cause__, CommitFailedError):
                raise
            # The group rebalanced away from us; the new owner redelivers (at-least-once).
            log.info("kafka commit lost to a rebalance", partition=str(partition))
            return
        self._committed[partition] = ledger.safe

    async def revoke(self, partitions: list[TopicPartition]) -> None:
        """Before partitions leave: commit their safe offsets and drop their tracking."""
        for partition in partitions:
            # No lock: an ack's commit may be waiting for this very rebalance to end.
            await self._commit(partition)
            self._ledgers.pop(partition, None)
            self._committed.pop(partition, None)
        gone = set(partitions)
        self._buffer = deque(
            r for r in self._buffer if TopicPartition(r.topic, r.partition) not in gone
        )
        # Deliveries still out on those partitions are stale: the partitions' next owner
        # reads them again from the committed offset. That owner may be this member (the
        # group revokes every partition before each reassignment), so they must give back
        # their prefetch room, or a member holding `prefetch` of them never fetches again.
        stale = {d for d in self._unsettled if d.partition in gone}
        if stale:
            self._unsettled -= stale
            self._settled.set()

    async def close(self) -> None:
        """Give back unsettled records, commit what is done, and leave the group.

        Giving back means requeueing (or dead-lettering) a copy with its count raised,
        as a broker that counts deliveries would: a consumer that keeps dying holding a
        message then sends it to `dead`. A process killed outright cannot do this; its
        uncommitted records come back with their old count.
        """
        if self._closed:
            return
        self._closed = True
        self._settled.set()
        self._buffer.clear()
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_SECONDS):
            for delivery in sorted(self._unsettled, key=lambda d: d.offset):
                try:
                    await delivery.give_back()
                except TransportUnavailable:
                    log.warning("kafka could not give back a record; it returns uncounted")
            self._unsettled.clear()
            for partition in list(self._ledgers):
                try:
                    await self.commit(partition)
                except TransportUnavailable:
                    log.warning("kafka could not commit on close", partition=str(partition))
            if self.consumer is not None:
                consumer, self.consumer = self.consumer, None
                with _driver_errors(self.transport.url):
                    await consumer.stop()
            self.transport.forget(self)


class KafkaTransport:
    """Transport over Kafka (aiokafka); see the module docstring for the offset rules."""

    name: ClassVar[str] = "kafka"
    DURABLE: ClassVar[bool] = True
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = False
    ORDERED_PER_KEY: ClassVar[bool] = True

    def __init__(self, settings: TransportSettings) -> None:
        self._settings = settings
        self._servers = _bootstrap(settings.url or DEFAULT_URL)
        self.url = ",".join(self._servers)
        self._client = kafka_client_kwargs(
            self._servers, ssl_context(settings.tls, "transport.tls")
        )
        """What every aiokafka client is built with: the servers and, with TLS, SSL."""
        self.max_deliveries = settings.max_deliveries
        self._admin: AIOKafkaAdminClient | None = None
        self._producer: AIOKafkaProducer | None = None
        self._topics: set[str] = set()
        self._subscriptions: set[_Subscription] = set()
        self.closed = False

    # --- lifecycle ----------------------------------------------------------------

    async def connect(self) -> None:
        """Start the admin client and the producer (acks from all in-sync replicas)."""
        if self._producer is not None:
            return
        self.closed = False
        admin = AIOKafkaAdminClient(**self._client)
        producer = AIOKafkaProducer(
            **self._client,
            acks="all",
            enable_idempotence=self._settings.kafka_idempotence,
        )
        try:
            with _driver_errors(self.url):
                await admin.start()
                await producer.start()
        except TransportUnavailable:
            await _quietly(admin.close())
            await _quietly(producer.stop())
            raise
        self._admin, self._producer = admin, producer

    async def close(self) -> None:
        """Close open subscriptions (giving back their records), flush, disconnect."""
        for subscription in list(self._subscriptions):
            await subscription.close()
        self.closed = True
        admin, producer, self._admin, self._producer = self._admin, self._producer, None, None
        with _driver_errors(self.url):
            if producer is not None:
                await producer.stop()
            if admin is not None:
                await admin.close()

    async def delete_topics(self) -> None:
        """Remove every topic of the namespace (tests and uninstall)."""
        prefix = f"{self._settings.namespace}."
        with _driver_errors(self.url):
            admin = self._require(self._admin)
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            if names:
                await admin.delete_topics(names)
        self._topics.clear()

    def topic(self, channel: str) -> str:
        """The Kafka topic of a logical channel."""
        return f"{self._settings.namespace}.{channel}"

    def group_id(self, channel: str, group: str) -> str:
        """The Kafka consumer group of (channel, group).

        Namespaced like topics, so installs sharing a broker never share a group; and one
        per channel, so members joining one channel do not rebalance another's consumers.
        """
        return f"{self._settings.namespace}.{channel}.{group}"

    async def _ensure_topic(self, channel: str) -> str:
        topic = self.topic(channel)
        if topic in self._topics:
            return topic
        new = NewTopic(topic, num_partitions=self._settings.partitions, replication_factor=1)
        with _driver_errors(self.url):
            try:
                response = await self._require(self._admin).create_topics([new])
            except TopicAlreadyExistsError:
                pass  # some versions raise instead of reporting it in the response
            else:
                for _name, code, *rest in response.topic_errors:
                    if code not in (0, _TOPIC_EXISTS):
                        raise for_code(code)(rest[0] if rest else topic)
        self._topics.add(topic)
        return topic

    # --- publishing ---------------------------------------------------------------

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        """Send the batch and wait until the broker has every record (acks=all)."""
        topic = await self._ensure_topic(channel)
        await self._send_all(topic, [(m, m.headers) for m in messages])

    async def requeue(self, channel: str, message: Message, deliveries: int) -> None:
        """Publish a copy at the end of the topic, counting the deliveries so far."""
        await self._send_all(
            await self._ensure_topic(channel),
            [(message, {**message.headers, COUNT_HEADER: str(deliveries)})],
        )

    async def dead_letter(self, message: Message, channel: str, reason: str) -> None:
        """Publish a message to the dead topic, saying where from and why."""
        headers = {**message.headers, DEAD_REASON_HEADER: reason, DEAD_FROM_HEADER: channel}
        await self._send_all(await self._ensure_topic(DEAD_CHANNEL), [(message, headers)])

    async def _send_all(self, topic: str, batch: list[tuple[Message, dict[str, str]]]) -> None:
        with _driver_errors(self.url):
            producer = self._require(self._producer)
            pending: list[Awaitable[Any]] = []
            for message, headers in batch:
                pending.append(
                    await producer.send(
                        topic,
                        value=message.body,
                        key=message.key.encode() if message.key else None,
                        headers=[(k, v.encode()) for k, v in headers.items()],
                    )
                )
            results = await asyncio.gather(*pending, return_exceptions=True)
            failures = [r for r in results if isinstance(r, BaseException)]
            if failures:
                raise failures[0]

    # --- consuming ----------------------------------------------------------------

    @asynccontextmanager
    async def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """Join consumer group `group` on the channel's topic (from the earliest offset)."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        topic = await self._ensure_topic(channel)
        if is_broadcast(channel):
            errors = functools.partial(_driver_errors, self.url)
            async with broadcast_subscription(
                self, channel, topic, client=self._client, prefetch=prefetch, errors=errors
            ) as deliveries:
                yield deliveries
            return
        subscription = _Subscription(self, channel, prefetch)
        consumer = AIOKafkaConsumer(
            **self._client,
            group_id=self.group_id(channel, group),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            heartbeat_interval_ms=1000,
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
        )
        consumer.subscribe([topic], listener=_Rebalance(subscription))
        with _driver_errors(self.url):
            await consumer.start()
        subscription.consumer = consumer
        self._subscriptions.add(subscription)
        try:
            # Return once the member is in the group, so that what is published next is
            # shared with the members that are already there rather than racing the join.
            with anyio.move_on_after(JOIN_SECONDS):
                await subscription.joined.wait()
            yield subscription
        finally:
            await subscription.close()

    def forget(self, subscription: _Subscription) -> None:
        """A subscription has closed."""
        self._subscriptions.discard(subscription)

    def _require(self, client: Any) -> Any:
        if client is None:
            raise TransportUnavailable(self.url, "not connected (call connect first)")
        return client


async def _quietly(operation: Awaitable[Any]) -> None:
    """Release a half-started client; its own error adds nothing to the first one."""
    try:
        await operation
    except (KafkaError, OSError):
        log.debug("ignored an error while releasing a kafka client", exc_info=True)
