"""In-process fakes for the worker and orchestrator unit tests: a transport and a clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import anyio
import anyio.lowlevel

from treadle.messages import Envelope, Message, Payload, decode, envelope, to_message


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


class FakeDelivery:
    """A delivery that records how it was settled."""

    def __init__(self, message: Message, delivery_count: int = 1) -> None:
        self._message = message
        self._count = delivery_count
        self.settled: str | None = None
        self.settled_event = anyio.Event()

    @property
    def message(self) -> Message:
        return self._message

    @property
    def delivery_count(self) -> int:
        return self._count

    async def ack(self) -> None:
        self._settle("ack")

    async def nack(self, *, requeue: bool = True) -> None:
        self._settle("requeue" if requeue else "dead")

    def _settle(self, how: str) -> None:
        assert self.settled is None, "a delivery is settled once"
        self.settled = how
        self.settled_event.set()


class FakeTransport:
    """Publishes into a list per channel; each subscription reads what the test feeds it."""

    name: ClassVar[str] = "fake"
    DURABLE: ClassVar[bool] = False
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = True
    ORDERED_PER_KEY: ClassVar[bool] = True

    def __init__(self) -> None:
        self.published: dict[str, list[Message]] = {}
        self.subscriptions: list[tuple[str, str, int]] = []
        self.fail_publish = False
        self._feeds: dict[str, tuple[Any, Any]] = {}
        self.publish_event = anyio.Event()

    async def connect(self) -> None:
        return None

    async def close(self) -> None:
        for send, receive in self._feeds.values():
            await send.aclose()
            await receive.aclose()

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        await anyio.lowlevel.checkpoint()
        if self.fail_publish:
            raise ConnectionError("the fake broker is down")
        self.published.setdefault(channel, []).extend(messages)
        self.publish_event.set()
        self.publish_event = anyio.Event()

    def feed(self, channel: str) -> Any:
        """The send side of a channel's deliveries (created on first use)."""
        if channel not in self._feeds:
            self._feeds[channel] = anyio.create_memory_object_stream[FakeDelivery](100)
        return self._feeds[channel][0]

    def subscribe(self, channel: str, group: str, prefetch: int) -> Any:
        self.subscriptions.append((channel, group, prefetch))
        self.feed(channel)
        receive = self._feeds[channel][1]

        @asynccontextmanager
        async def consume() -> AsyncIterator[AsyncIterator[FakeDelivery]]:
            yield receive.__aiter__()

        return consume()

    def envelopes(self, channel: str) -> list[Envelope]:
        """Decoded messages published on a channel, in order."""
        return [decode(m.body) for m in self.published.get(channel, [])]

    def payloads(self, channel: str) -> list[Payload]:
        return [e.payload for e in self.envelopes(channel)]

    async def wait_published(self, channel: str, count: int) -> None:
        """Wait until `count` messages were published on `channel`."""
        while len(self.published.get(channel, [])) < count:
            await self.publish_event.wait()


def delivery_of(payload: Payload, traceparent: str | None = None) -> FakeDelivery:
    """A delivery carrying `payload` in an envelope, as a transport would hand it over."""
    return FakeDelivery(to_message(envelope(payload, source="test", traceparent=traceparent)))
