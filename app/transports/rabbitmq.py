"""The RabbitMQ transport (aio-pika): quorum queues, publisher confirms, manual acks.

Mapping. A logical channel `c` is one durable quorum queue `<namespace>.<c>`, published
to through the default exchange with persistent messages. A channel has one consumer
group: every subscriber of a queue competes for its messages, and `group` only names
the consumer (it is the prefix of its consumer tag). Treadle uses one group per
channel, and a queue that exists from the first publish keeps messages published
before any consumer subscribed.

Broadcast. A broadcast channel `b` (`is_broadcast`) is a durable fanout exchange
`<namespace>.<b>`; each subscription binds a queue of its own to it, named
`<namespace>.<b>.<random>`, exclusive and auto-delete, so the broker deletes it when its
subscription or its connection ends. A message published with no queue bound is dropped.

Poison. A consumer's `nack(requeue=False)`, or a requeue of a delivery that already
had `max_deliveries` deliveries, publishes the message to the `dead` channel (with
`x-treadle-dead-reason` and `x-treadle-dead-from`) and then acks it. As a backstop for
consumers that die before settling, each queue has `x-delivery-limit` set to
`max_deliveries` and dead-letters to the dead queue by itself; the reason of such a
message is read back from its `x-death` header when it is consumed.

Resilience. The connection is `connect_robust`: after a drop it reconnects, declares
the queues again and restarts consumers. Deliveries received before the drop cannot
be settled any more (the broker redelivers them), so settling one is a logged no-op.
Messages the broker had sent ahead (up to `prefetch`) but the consumer had not yet
handed out when it closes go back to the queue, and quorum queues count that as a
delivery.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import Any, ClassVar

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractQueueIterator,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from treadle._tls import ssl_context
from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, Message, is_broadcast
from treadle.observability import get_logger, strip_url_passwords
from treadle.ports import Delivery
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED
from treadle.transports._errors import TransportUnavailable
from treadle.transports._tls import rabbitmq_connect_kwargs

log = get_logger(__name__)

DEFAULT_URL = "amqp://guest:guest@127.0.0.1:5672/"
_RECONNECT_SECONDS = 1.0
_TIMEOUT_SECONDS = 30.0
_CLOSE_GRACE_SECONDS = 10.0
# The broker's own dead-letter reasons, in our vocabulary.
_BROKER_REASONS = {"delivery_limit": MAX_DELIVERIES, "rejected": REJECTED}


@contextmanager
def _broker_errors(url: str) -> Iterator[None]:
    """The one place aio-pika's and aiormq's errors become `TransportUnavailable`."""
    try:
        yield
    except (aiormq.AMQPError, aiormq.ChannelInvalidStateError, OSError) as exc:
        raise TransportUnavailable(url, f"{type(exc).__name__}: {exc}") from exc


class _InFlight:
    """Counts settle operations in progress, so close can wait for them."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @contextmanager
    def track(self) -> Iterator[None]:
        self._count += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._count -= 1
            if not self._count:
                self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


class _RabbitDelivery:
    """One AMQP delivery; settling it twice, or after a reconnect, does nothing."""

    __slots__ = ("_consumer", "_count", "_incoming", "_message")

    def __init__(self, incoming: AbstractIncomingMessage, consumer: _Consumer) -> None:
        self._incoming = incoming
        self._consumer = consumer
        self._message = _to_message(incoming, consumer.namespace)
        self._count = _delivery_count(incoming)

    @property
    def message(self) -> Message:
        return self._message

    @property
    def delivery_count(self) -> int:
        return self._count

    async def ack(self) -> None:
        await self._consumer.settle(self._incoming, requeue=None)

    async def nack(self, *, requeue: bool = True) -> None:
        if not requeue:
            await self.dead_letter(REJECTED)
        elif self._count >= self._consumer.max_deliveries:
            await self.dead_letter(MAX_DELIVERIES)
        else:
            await self._consumer.settle(self._incoming, requeue=True)

    async def dead_letter(self, reason: str) -> None:
        """Publish to the dead channel (confirmed), then ack: at least once, never lost."""
        if self._incoming.processed:
            return
        headers = {
            **self._message.headers,
            DEAD_REASON_HEADER: reason,
            DEAD_FROM_HEADER: self._consumer.channel,
        }
        dead = Message(key=self._message.key, body=self._message.body, headers=headers)
        await self._consumer.transport.publish(DEAD_CHANNEL, [dead])
        await self._consumer.settle(self._incoming, requeue=None)


class _Consumer:
    """An async iterator of deliveries over one queue, on its own AMQP channel."""

    def __init__(
        self,
        transport: RabbitMQTransport,
        channel: str,
        amqp_channel: AbstractRobustChannel,
        iterator: AbstractQueueIterator,
    ) -> None:
        self.transport = transport
        self.channel = channel
        self.namespace = transport.namespace
        self.max_deliveries = transport.max_deliveries
        self._amqp_channel = amqp_channel
        self._iterator = iterator
        self._in_flight = _InFlight()

    def __aiter__(self) -> _Consumer:
        return self

    async def __anext__(self) -> Delivery:
        while True:
            with _broker_errors(self.transport.url):
                incoming = await self._iterator.__anext__()
            delivery = _RabbitDelivery(incoming, self)
            if delivery.delivery_count <= self.max_deliveries:
                return delivery
            # Its consumers kept dying before settling it: give up on it here.
            await delivery.dead_letter(MAX_DELIVERIES)

    async def settle(self, incoming: AbstractIncomingMessage, *, requeue: bool | None) -> None:
        """Ack (requeue None) or nack; a delivery the broker already took back is skipped."""
        if incoming.processed:
            return
        with self._in_flight.track():
            try:
                if requeue is None:
                    await incoming.ack()
                else:
                    await incoming.nack(requeue=requeue)
            except (aiormq.AMQPError, aiormq.ChannelInvalidStateError) as exc:
                # Its channel is gone, so the broker has requeued it and will redeliver.
                log.warning(
                    "could not settle a delivery (it will be redelivered)",
                    channel=self.channel,
                    error=repr(exc),
                )

    async def close(self) -> None:
        """Stop receiving, let settles in progress finish, then close the AMQP channel."""
        with suppress(aiormq.AMQPError, aiormq.ChannelInvalidStateError, OSError):
            await self._iterator.close()
        with suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_GRACE_SECONDS):
                await self._in_flight.wait_idle()
        with suppress(aiormq.AMQPError, aiormq.ChannelInvalidStateError, OSError):
            await self._amqp_channel.close()


class RabbitMQTransport:
    """The `Transport` port on RabbitMQ (see the module docstring)."""

    name: ClassVar[str] = "rabbitmq"
    DURABLE: ClassVar[bool] = True
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = True
    ORDERED_PER_KEY: ClassVar[bool] = False

    def __init__(self, settings: TransportSettings) -> None:
        self._settings = settings
        self._url = settings.url or DEFAULT_URL
        self.url = strip_url_passwords(self._url)
        self.namespace = settings.namespace
        self.max_deliveries = settings.max_deliveries
        # Named so operators (and tests) can find this process's connection.
        self.connection_name = f"treadle:{settings.namespace}:{uuid.uuid4().hex[:12]}"
        self._tls = ssl_context(settings.tls, "transport.tls")
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._declared: set[str] = set()
        self._exchanges: set[str] = set()
        self._consumers: set[_Consumer] = set()

    @property
    def declared_queues(self) -> frozenset[str]:
        """The queues this transport has declared (for operators and test clean-up)."""
        return frozenset(self._declared)

    @property
    def declared_exchanges(self) -> frozenset[str]:
        """The broadcast channels' fanout exchanges this transport has declared."""
        return frozenset(self._exchanges)

    def queue_name(self, channel: str) -> str:
        """The queue a logical channel maps to in this namespace."""
        return f"{self.namespace}.{channel}"

    async def connect(self) -> None:
        if self._connection is not None:
            return
        with _broker_errors(self.url):
            self._connection = await aio_pika.connect_robust(
                **rabbitmq_connect_kwargs(self._url, self._tls),
                client_properties={"connection_name": self.connection_name},
                reconnect_interval=_RECONNECT_SECONDS,
                timeout=_TIMEOUT_SECONDS,
            )
            publisher = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            assert isinstance(publisher, AbstractRobustChannel)  # connect_robust's channels are
            self._publisher = publisher
            await self._declare(publisher, DEAD_CHANNEL)

    async def close(self) -> None:
        """Stop consumers (their settles in progress finish first), then disconnect."""
        for consumer in list(self._consumers):
            await consumer.close()
        self._consumers.clear()
        if self._connection is not None:
            with suppress(aiormq.AMQPError, aiormq.ChannelInvalidStateError, OSError):
                await self._connection.close()
        self._connection = self._publisher = None

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        """Send the whole batch, then wait for every confirm at once.

        If the connection drops meanwhile, waits for the reconnect and sends the batch
        once more: a message may then be published twice, never zero times.
        """
        if not messages:
            return
        try:
            await self._publish_once(channel, messages)
        except TransportUnavailable:
            if not await self._reconnected():
                raise
            await self._publish_once(channel, messages)

    async def _publish_once(self, channel: str, messages: Sequence[Message]) -> None:
        publisher = self._require(self._publisher)
        routing_key = self.queue_name(channel)
        with _broker_errors(self.url):
            if is_broadcast(channel):
                # Every queue bound gets a copy; with none bound nobody is listening.
                exchange, routing_key, mandatory = await self._fanout(publisher, channel), "", False
            else:
                if routing_key not in self._declared:
                    await self._declare(publisher, channel)
                exchange, mandatory = publisher.default_exchange, True
            confirms = await asyncio.gather(
                *(
                    exchange.publish(
                        _to_amqp(m), routing_key, mandatory=mandatory, timeout=_TIMEOUT_SECONDS
                    )
                    for m in messages
                )
            )
        refused = sum(not isinstance(c, aiormq.spec.Basic.Ack) for c in confirms)
        if refused:
            raise TransportUnavailable(self.url, f"broker refused {refused} of {len(messages)}")

    async def _reconnected(self) -> bool:
        """Wait for the robust connection to come back; False if it was closed on purpose."""
        connection, publisher = self._connection, self._publisher
        if connection is None or publisher is None or connection.is_closed:
            return False
        with suppress(TimeoutError):
            async with asyncio.timeout(_TIMEOUT_SECONDS):
                await connection.connected.wait()
                await publisher.ready()
                return True
        return False

    @asynccontextmanager
    async def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """Consume `channel`'s queue; `group` only names the consumer (see above)."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        connection = self._require(self._connection)
        with _broker_errors(self.url):
            amqp_channel = await connection.channel(publisher_confirms=False)
            assert isinstance(amqp_channel, AbstractRobustChannel)
            await amqp_channel.set_qos(prefetch_count=prefetch)
            if is_broadcast(channel):
                queue = await self._declare_copy(amqp_channel, channel)
            else:
                queue = await self._declare(amqp_channel, channel)
            iterator = queue.iterator(consumer_tag=f"{group}.{uuid.uuid4().hex[:12]}")
            # Consume now, not on the first iteration: the subscription is live on entry.
            await iterator.consume()
        consumer = _Consumer(self, channel, amqp_channel, iterator)
        self._consumers.add(consumer)
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            await consumer.close()

    async def _declare(self, amqp_channel: AbstractRobustChannel, channel: str) -> AbstractQueue:
        name = self.queue_name(channel)
        queue = await amqp_channel.declare_queue(
            name, durable=True, arguments=self._queue_arguments(channel)
        )
        self._declared.add(name)
        return queue

    async def _fanout(self, amqp_channel: AbstractRobustChannel, channel: str) -> AbstractExchange:
        """The fanout exchange of a broadcast channel, declared on first use."""
        # Durable and never auto-deleted: a publish to an exchange that is gone would fail.
        name = self.queue_name(channel)
        exchange = await amqp_channel.declare_exchange(
            name, aio_pika.ExchangeType.FANOUT, durable=True
        )
        self._exchanges.add(name)
        return exchange

    async def _declare_copy(
        self, amqp_channel: AbstractRobustChannel, channel: str
    ) -> AbstractQueue:
        """A subscription's own queue on a broadcast channel, gone when the subscription is."""
        exchange = await self._fanout(amqp_channel, channel)
        name = f"{self.queue_name(channel)}.{uuid.uuid4().hex[:12]}"
        queue = await amqp_channel.declare_queue(name, exclusive=True, auto_delete=True)
        await queue.bind(exchange)
        return queue

    def _queue_arguments(self, channel: str) -> dict[str, Any]:
        if channel == DEAD_CHANNEL:
            return {"x-queue-type": "quorum"}
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.max_deliveries,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": self.queue_name(DEAD_CHANNEL),
        }

    def _require(self, resource: Any) -> Any:
        if resource is None:
            raise TransportUnavailable(self.url, "not connected (call connect first)")
        return resource


def _to_amqp(message: Message) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        headers=dict(message.headers),
        correlation_id=message.key,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def _to_message(incoming: AbstractIncomingMessage, namespace: str) -> Message:
    headers = _text_headers(incoming.headers)
    if DEAD_REASON_HEADER not in headers:
        headers.update(_broker_dead_headers(incoming.headers, namespace))
    return Message(key=incoming.correlation_id or "", body=incoming.body, headers=headers)


def _text_headers(raw: Mapping[str, Any]) -> dict[str, str]:
    # Broker-added headers (x-death, x-delivery-count) are not strings; ours all are.
    headers = {}
    for name, value in raw.items():
        if isinstance(value, str):
            headers[name] = value
        elif isinstance(value, bytes):
            headers[name] = value.decode("utf-8", "replace")
    return headers


def _broker_dead_headers(raw: Mapping[str, Any], namespace: str) -> dict[str, str]:
    """Our dead-letter headers, read from `x-death` when the broker dead-lettered it."""
    deaths = raw.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], Mapping):
        return {}
    reason = _text(deaths[0].get("reason"))
    queue = _text(deaths[0].get("queue"))
    return {
        DEAD_REASON_HEADER: _BROKER_REASONS.get(reason, reason),
        DEAD_FROM_HEADER: queue.removeprefix(f"{namespace}."),
    }


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value) if value is not None else ""


def _delivery_count(incoming: AbstractIncomingMessage) -> int:
    # Quorum queues count returns in x-delivery-count (absent on the first delivery).
    returns = incoming.headers.get("x-delivery-count")
    if isinstance(returns, int):
        return returns + 1
    return 2 if incoming.redelivered else 1
