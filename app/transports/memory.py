"""The in-process transport: one process, no broker, nothing durable.

Used for the embedded single-process mode and in tests. Runs on asyncio and trio
(anyio only). Each channel is an unbounded FIFO of entries; publish never waits for a
consumer, and backpressure is each consumer's `prefetch` bound on unacked deliveries.

A channel has one consumer group: every subscriber of a channel competes for its
messages, whatever `group` it names (Treadle uses one group per channel). Transports
that share a `MemoryBroker` behave like processes sharing a broker: closing one hands
its unacked deliveries to the others, as a broker redelivers after a consumer dies.

A broadcast channel (`is_broadcast`) is the exception: each subscription has a FIFO of
its own, every publish puts a copy in each one open, and a closed one is dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import ClassVar

import anyio
import anyio.lowlevel

from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, Message, is_broadcast
from treadle.ports import Delivery
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED
from treadle.transports._errors import TransportUnavailable

_URL = "memory://"


class _Entry:
    """A message in a channel, with how many times it has been delivered so far."""

    __slots__ = ("deliveries", "message")

    def __init__(self, message: Message, deliveries: int = 0) -> None:
        self.message = message
        self.deliveries = deliveries


class _Channel:
    """One channel's ready entries and the consumers waiting for one to arrive."""

    def __init__(self) -> None:
        self.ready: deque[_Entry] = deque()
        self.waiting: set[_Consumer] = set()

    def put(self, entries: Iterable[_Entry]) -> None:
        self.ready.extend(entries)
        self.wake_waiting()

    def put_back(self, entries: Sequence[_Entry]) -> None:
        # Returned entries go first, in their original order, as a broker requeues them.
        self.ready.extendleft(reversed(entries))
        self.wake_waiting()

    def wake_waiting(self) -> None:
        # Waking every waiter is cheap (a process has few consumers per channel) and
        # cannot strand a message the way handing a wake-up to one cancelled waiter can.
        for consumer in self.waiting:
            consumer.wake()
        self.waiting.clear()


class MemoryBroker:
    """The channels of one process. Pass one to several transports to share it."""

    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}
        self._copies: dict[str, set[_Channel]] = {}
        """Each broadcast channel's open subscriptions, one FIFO each."""

    def channel(self, name: str) -> _Channel:
        """The channel with this name, created on first use."""
        channel = self._channels.get(name)
        if channel is None:
            channel = self._channels[name] = _Channel()
        return channel

    def publish(self, name: str, messages: Sequence[Message]) -> None:
        """Queue messages on a channel; on a broadcast one, a copy for each subscription."""
        if not is_broadcast(name):
            self.channel(name).put(_Entry(message) for message in messages)
            return
        for copy in self._copies.get(name, ()):
            copy.put(_Entry(message) for message in messages)

    def open_copy(self, name: str) -> _Channel:
        """A new subscription's own FIFO of broadcast channel `name`."""
        copy = _Channel()
        self._copies.setdefault(name, set()).add(copy)
        return copy

    def close_copy(self, name: str, copy: _Channel) -> None:
        """Forget a subscription's FIFO, and whatever it still held."""
        copies = self._copies.get(name, set())
        copies.discard(copy)
        if not copies:
            self._copies.pop(name, None)

    def dead_letter(self, entry: _Entry, source: str, reason: str) -> None:
        """Move an entry to the dead channel, recording where it came from and why."""
        headers = {**entry.message.headers, DEAD_REASON_HEADER: reason, DEAD_FROM_HEADER: source}
        dead = Message(key=entry.message.key, body=entry.message.body, headers=headers)
        self.channel(DEAD_CHANNEL).put([_Entry(dead)])


class _MemoryDelivery:
    """One delivery of an entry to a consumer; settling it twice does nothing."""

    __slots__ = ("_consumer", "_count", "_entry")

    def __init__(self, entry: _Entry, consumer: _Consumer) -> None:
        self._entry = entry
        self._consumer = consumer
        self._count = entry.deliveries

    @property
    def message(self) -> Message:
        return self._entry.message

    @property
    def delivery_count(self) -> int:
        return self._count

    async def ack(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._consumer.settle(self)

    async def nack(self, *, requeue: bool = True) -> None:
        await anyio.lowlevel.checkpoint()
        if not self._consumer.settle(self):
            return
        if requeue:
            self._consumer.give_back([self._entry])
        else:
            self._consumer.dead_letter(self._entry, REJECTED)


class _Consumer:
    """An async iterator of deliveries holding at most `prefetch` unacked at once."""

    def __init__(
        self,
        broker: MemoryBroker,
        channel_name: str,
        prefetch: int,
        max_deliveries: int,
        *,
        channel: _Channel | None = None,
    ) -> None:
        self._broker = broker
        self._channel_name = channel_name
        self._channel = channel if channel is not None else broker.channel(channel_name)
        self._prefetch = prefetch
        self._max_deliveries = max_deliveries
        # A dict keeps delivery order, so closing gives entries back in that order.
        self._unacked: dict[_MemoryDelivery, None] = {}
        self._closed = False
        self._wakeup = anyio.Event()

    def __aiter__(self) -> _Consumer:
        return self

    async def __anext__(self) -> Delivery:
        # Cancellation can only land here, before an entry is taken, so none is lost.
        await anyio.lowlevel.checkpoint()
        while True:
            if self._closed:
                raise StopAsyncIteration
            if len(self._unacked) < self._prefetch and self._channel.ready:
                return self._deliver(self._channel.ready.popleft())
            await self._wait(for_message=len(self._unacked) < self._prefetch)

    def _deliver(self, entry: _Entry) -> _MemoryDelivery:
        entry.deliveries += 1
        delivery = _MemoryDelivery(entry, self)
        self._unacked[delivery] = None
        return delivery

    async def _wait(self, *, for_message: bool) -> None:
        # A fresh event per wait: a wake-up from before this wait cannot be mistaken
        # for one after it. Without room (prefetch reached) only a settle wakes us.
        self._wakeup = anyio.Event()
        if for_message:
            self._channel.waiting.add(self)
        try:
            await self._wakeup.wait()
        finally:
            self._channel.waiting.discard(self)

    def wake(self) -> None:
        self._wakeup.set()

    def settle(self, delivery: _MemoryDelivery) -> bool:
        """Forget an unacked delivery; False if it was already settled or given back."""
        if delivery not in self._unacked:
            return False
        del self._unacked[delivery]
        self.wake()
        return True

    def give_back(self, entries: Sequence[_Entry]) -> None:
        """Requeue entries, dead-lettering those delivered `max_deliveries` times."""
        spent = [e for e in entries if e.deliveries >= self._max_deliveries]
        for entry in spent:
            self.dead_letter(entry, MAX_DELIVERIES)
        self._channel.put_back([e for e in entries if e.deliveries < self._max_deliveries])

    def dead_letter(self, entry: _Entry, reason: str) -> None:
        self._broker.dead_letter(entry, self._channel_name, reason)

    def close(self) -> None:
        """End the iteration and give every unacked delivery back to the channel."""
        self._closed = True
        unacked = [delivery._entry for delivery in self._unacked]
        self._unacked.clear()
        self.give_back(unacked)
        self.wake()


class MemoryTransport:
    """The `Transport` port inside one process (see the module docstring)."""

    name: ClassVar[str] = "memory"
    DURABLE: ClassVar[bool] = False
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = True
    ORDERED_PER_KEY: ClassVar[bool] = False

    def __init__(self, settings: TransportSettings, *, broker: MemoryBroker | None = None) -> None:
        self._settings = settings
        self._broker = broker if broker is not None else MemoryBroker()
        self._consumers: set[_Consumer] = set()
        self._connected = False

    async def connect(self) -> None:
        await anyio.lowlevel.checkpoint()
        self._connected = True

    async def close(self) -> None:
        """Stop every subscription; their unacked deliveries go back to the channels."""
        await anyio.lowlevel.checkpoint()
        self._connected = False
        for consumer in list(self._consumers):
            consumer.close()
        self._consumers.clear()

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        await anyio.lowlevel.checkpoint()
        self._require_connected()
        self._broker.publish(channel, messages)

    @asynccontextmanager
    async def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AsyncIterator[AsyncIterator[Delivery]]:
        """Consume `channel`; `group` is not used (a channel has one group, see above)."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, not {prefetch}")
        self._require_connected()
        copy = self._broker.open_copy(channel) if is_broadcast(channel) else None
        consumer = _Consumer(
            self._broker, channel, prefetch, self._settings.max_deliveries, channel=copy
        )
        self._consumers.add(consumer)
        try:
            yield consumer
        finally:
            self._consumers.discard(consumer)
            consumer.close()
            if copy is not None:
                self._broker.close_copy(channel, copy)

    def _require_connected(self) -> None:
        if not self._connected:
            raise TransportUnavailable(_URL, "not connected (call connect first, or it was closed)")
