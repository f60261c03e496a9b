"""The in-process transport's own behaviour, on asyncio and trio."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import anyio
import pytest

from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, Message
from treadle.ports import Delivery
from treadle.transports import (
    DEAD_FROM_HEADER,
    DEAD_REASON_HEADER,
    MAX_DELIVERIES,
    REJECTED,
    TransportUnavailable,
    UnknownTransport,
    build_transport,
)
from treadle.transports.memory import MemoryBroker, MemoryTransport

pytestmark = pytest.mark.anyio


def _message(n: int, key: str = "k") -> Message:
    return Message(key=key, body=f"m{n}".encode(), headers={"n": str(n)})


@pytest.fixture
async def transport() -> AsyncIterator[MemoryTransport]:
    """A connected memory transport that gives up after three deliveries."""
    transport = MemoryTransport(TransportSettings(max_deliveries=3))
    await transport.connect()
    yield transport
    await transport.close()


async def _take(deliveries: AsyncIterator[Delivery]) -> Delivery:
    with anyio.fail_after(2):
        return await anext(deliveries)


async def _nothing_within(deliveries: AsyncIterator[Delivery], seconds: float = 0.05) -> bool:
    with anyio.move_on_after(seconds):
        await anext(deliveries)
        return False
    return True


async def test_build_transport_picks_memory_by_default() -> None:
    """The default settings build the in-process transport."""
    assert isinstance(build_transport(TransportSettings()), MemoryTransport)


def test_building_the_memory_transport_imports_no_broker_driver() -> None:
    """The factory imports an adapter's driver only when that adapter is chosen."""
    code = (
        "import sys; from treadle.config import TransportSettings; "
        "from treadle.transports import build_transport; build_transport(TransportSettings()); "
        "print(sorted({'aio_pika', 'aiokafka', 'nats'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.decode().strip() == "[]"


async def test_build_transport_rejects_unknown_kind() -> None:
    """An unknown kind is a TreadleError naming the kind, not a KeyError."""
    # msgspec does not validate in __init__, so a bad kind can reach the factory.
    settings = TransportSettings(kind="carrier-pigeon")  # type: ignore[arg-type]
    with pytest.raises(UnknownTransport) as info:
        build_transport(settings)
    assert info.value.kind == "carrier-pigeon"


async def test_publish_before_connect_is_unavailable() -> None:
    """Publishing on a transport that is not connected raises TransportUnavailable."""
    transport = MemoryTransport(TransportSettings())
    with pytest.raises(TransportUnavailable) as info:
        await transport.publish("events", [_message(1)])
    assert info.value.url == "memory://"


async def test_messages_arrive_in_publish_order(transport: MemoryTransport) -> None:
    """A single consumer receives a channel's messages first-in first-out."""
    await transport.publish("events", [_message(n) for n in range(5)])
    async with transport.subscribe("events", "g", prefetch=10) as deliveries:
        got = [await _take(deliveries) for _ in range(5)]
    assert [d.message.body for d in got] == [f"m{n}".encode() for n in range(5)]
    assert all(d.delivery_count == 1 for d in got)


async def test_prefetch_bounds_unacked_deliveries(transport: MemoryTransport) -> None:
    """A consumer holds at most `prefetch` unacked deliveries until it acks one."""
    await transport.publish("events", [_message(n) for n in range(3)])
    async with transport.subscribe("events", "g", prefetch=2) as deliveries:
        first = await _take(deliveries)
        await _take(deliveries)
        assert await _nothing_within(deliveries)
        await first.ack()
        third = await _take(deliveries)
    assert third.message.body == b"m2"


async def test_waiting_consumer_wakes_on_publish(transport: MemoryTransport) -> None:
    """A consumer blocked on an empty channel receives a message published later."""
    received: list[bytes] = []
    async with (
        transport.subscribe("events", "g", prefetch=1) as deliveries,
        anyio.create_task_group() as tg,
    ):

        async def consume() -> None:
            received.append((await _take(deliveries)).message.body)

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        await transport.publish("events", [_message(7)])
    assert received == [b"m7"]


async def test_nack_requeue_redelivers_first_with_higher_count(
    transport: MemoryTransport,
) -> None:
    """A requeued message comes back before newer ones, its delivery count raised."""
    await transport.publish("events", [_message(1), _message(2)])
    async with transport.subscribe("events", "g", prefetch=1) as deliveries:
        await (await _take(deliveries)).nack(requeue=True)
        again = await _take(deliveries)
    assert again.message.body == b"m1"
    assert again.delivery_count == 2


async def test_nack_without_requeue_dead_letters_with_reason(
    transport: MemoryTransport,
) -> None:
    """A rejected message lands on the dead channel with its reason and origin."""
    await transport.publish("tasks.default", [_message(1)])
    async with transport.subscribe("tasks.default", "g", prefetch=1) as deliveries:
        await (await _take(deliveries)).nack(requeue=False)
    async with transport.subscribe(DEAD_CHANNEL, "g", prefetch=1) as dead:
        delivery = await _take(dead)
    assert delivery.message.headers == {
        "n": "1",
        DEAD_REASON_HEADER: REJECTED,
        DEAD_FROM_HEADER: "tasks.default",
    }


async def test_dead_letters_after_max_deliveries(transport: MemoryTransport) -> None:
    """The third requeue of a message (max_deliveries=3) sends it to the dead channel."""
    await transport.publish("events", [_message(1)])
    async with transport.subscribe("events", "g", prefetch=1) as deliveries:
        counts = []
        for _ in range(3):
            delivery = await _take(deliveries)
            counts.append(delivery.delivery_count)
            await delivery.nack()
        assert await _nothing_within(deliveries)
    assert counts == [1, 2, 3]
    async with transport.subscribe(DEAD_CHANNEL, "g", prefetch=1) as dead:
        assert (await _take(dead)).message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES


async def test_closing_a_subscription_redelivers_its_unacked(transport: MemoryTransport) -> None:
    """Unacked deliveries of a closed subscription go to the next consumer, in order."""
    await transport.publish("events", [_message(n) for n in range(3)])
    async with transport.subscribe("events", "g", prefetch=3) as deliveries:
        first = await _take(deliveries)
        await _take(deliveries)
        await first.ack()
    async with transport.subscribe("events", "g", prefetch=3) as deliveries:
        again = [await _take(deliveries) for _ in range(2)]
    assert [(d.message.body, d.delivery_count) for d in again] == [(b"m1", 2), (b"m2", 1)]


async def test_settling_after_close_does_nothing(transport: MemoryTransport) -> None:
    """An ack after the subscription closed neither fails nor loses the redelivery."""
    await transport.publish("events", [_message(1)])
    async with transport.subscribe("events", "g", prefetch=1) as deliveries:
        late = await _take(deliveries)
    await late.ack()
    await late.nack(requeue=False)
    async with transport.subscribe("events", "g", prefetch=1) as deliveries:
        assert (await _take(deliveries)).delivery_count == 2


async def test_transport_close_ends_waiting_iteration(transport: MemoryTransport) -> None:
    """Closing the transport ends a consumer's iteration instead of leaving it hanging."""
    ended = anyio.Event()
    async with (
        transport.subscribe("events", "g", prefetch=1) as deliveries,
        anyio.create_task_group() as tg,
    ):

        async def consume() -> None:
            async for _ in deliveries:
                pass
            ended.set()

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        await transport.close()
        with anyio.fail_after(2):
            await ended.wait()
    assert ended.is_set()


async def test_shared_broker_acts_like_two_processes() -> None:
    """Two transports on one broker compete for a channel and inherit each other's unacked."""
    broker = MemoryBroker()
    one = MemoryTransport(TransportSettings(), broker=broker)
    two = MemoryTransport(TransportSettings(), broker=broker)
    await one.connect()
    await two.connect()
    await one.publish("events", [_message(1)])
    async with one.subscribe("events", "g", prefetch=1) as deliveries:
        await _take(deliveries)
        await one.close()
    async with two.subscribe("events", "g", prefetch=1) as deliveries:
        assert (await _take(deliveries)).delivery_count == 2
    await two.close()


async def test_cancelled_waiter_does_not_lose_a_message(transport: MemoryTransport) -> None:
    """A consumer cancelled while waiting leaves a later message for the next one."""
    async with transport.subscribe("events", "g", prefetch=1) as deliveries:
        assert await _nothing_within(deliveries)
        await transport.publish("events", [_message(1)])
        assert (await _take(deliveries)).message.body == b"m1"
