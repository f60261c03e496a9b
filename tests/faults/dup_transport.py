"""A transport that delivers every message twice, shuffled and late (in-process only)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import ClassVar

import anyio

from treadle.messages import Message
from treadle.ports import Delivery
from treadle.transports.memory import MemoryTransport


class DuplicatingTransport:
    """Wraps the in-process transport: each publish goes out twice, reordered and delayed."""

    name: ClassVar[str] = "duplicating"
    DURABLE: ClassVar[bool] = False
    COUNTS_LOST_DELIVERIES: ClassVar[bool] = True
    ORDERED_PER_KEY: ClassVar[bool] = False

    def __init__(self, inner: MemoryTransport, rng: random.Random, max_delay: float) -> None:
        self._inner = inner
        self._rng = rng
        self._max_delay = max_delay
        self.published = 0
        self.duplicated = 0

    async def connect(self) -> None:
        await self._inner.connect()

    async def close(self) -> None:
        await self._inner.close()

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        copies = [*messages, *messages]
        self._rng.shuffle(copies)
        self.published += len(messages)
        self.duplicated += len(messages)
        # A late publish lets later messages (other tasks' results) overtake this one.
        await anyio.sleep(self._rng.uniform(0, self._max_delay))
        await self._inner.publish(channel, copies)

    def subscribe(
        self, channel: str, group: str, prefetch: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Delivery]]:
        return self._inner.subscribe(channel, group, prefetch)
