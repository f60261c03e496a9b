"""The Transport contract, run against every transport in conftest.TRANSPORTS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from tests.integration.transports.conftest import MAX_DELIVERIES as LIMIT
from tests.integration.transports.conftest import TransportHarness
from treadle.messages import CONTROL_CHANNEL, DEAD_CHANNEL, Message, is_broadcast
from treadle.ports import Delivery, Transport
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED

pytestmark = pytest.mark.anyio

CHANNEL = "tasks.default"
WAIT = 15.0
"""Upper bound on any single wait: a broken transport fails fast instead of hanging."""
QUIET = 0.5
"""How long 'nothing more arrives' is watched for."""


def _message(n: int, key: str = "run-1") -> Message:
    return Message(key=key, body=f"m{n}".encode(), headers={"n": str(n)})


async def _take(deliveries: AsyncIterator[Delivery]) -> Delivery:
    with anyio.fail_after(WAIT):
        return await anext(deliveries)


async def _take_acked(deliveries: AsyncIterator[Delivery], count: int) -> list[Delivery]:
    taken = []
    with anyio.fail_after(WAIT):
        for _ in range(count):
            delivery = await anext(deliveries)
            await delivery.ack()
            taken.append(delivery)
    return taken


async def _quiet(deliveries: AsyncIterator[Delivery]) -> bool:
    """True if nothing arrives for QUIET seconds."""
    with anyio.move_on_after(QUIET):
        await anext(deliveries)
        return False
    return True


@pytest.fixture
async def transport(harness: TransportHarness, namespace: str) -> Transport:
    """One connected transport in this test's namespace."""
    return await harness.open(namespace)


async def test_every_message_is_delivered_once_when_acked(transport: Transport) -> None:
    """Messages published to a live subscription each arrive once, first time, and no more."""
    async with transport.subscribe(CHANNEL, "workers", prefetch=10) as deliveries:
        await transport.publish(CHANNEL, [_message(n) for n in range(50)])
        got = await _take_acked(deliveries, 50)
        assert await _quiet(deliveries)
    assert sorted(d.message.body for d in got) == sorted(f"m{n}".encode() for n in range(50))
    assert {d.delivery_count for d in got} == {1}


async def test_message_published_before_first_subscriber_is_delivered(
    transport: Transport,
) -> None:
    """A message published while no consumer exists waits for the first one."""
    await transport.publish(CHANNEL, [_message(1)])
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        delivery = await _take(deliveries)
        await delivery.ack()
    assert delivery.message == _message(1)


async def test_headers_key_and_binary_body_round_trip(transport: Transport) -> None:
    """Key, arbitrary bytes and unicode headers arrive exactly as published."""
    sent = Message(
        key="run-\u00e9",
        body=bytes(range(256)),
        headers={"traceparent": "00-abc-def-01", "note": "caf\u00e9 \u2603"},
    )
    await transport.publish(CHANNEL, [sent])
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        delivery = await _take(deliveries)
        await delivery.ack()
    assert delivery.message == sent


async def test_batch_of_a_thousand_all_arrive(transport: Transport) -> None:
    """One publish call of 1,000 messages returns only when all of them can be consumed."""
    await transport.publish(CHANNEL, [_message(n) for n in range(1000)])
    async with transport.subscribe(CHANNEL, "workers", prefetch=200) as deliveries:
        got = await _take_acked(deliveries, 1000)
    assert len({d.message.body for d in got}) == 1000


async def test_unacked_is_redelivered_after_its_subscription_closes(transport: Transport) -> None:
    """A delivery left unsettled when its subscription ends comes back with a higher count."""
    await transport.publish(CHANNEL, [_message(1)])
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        first = await _take(deliveries)
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        again = await _take(deliveries)
        await again.ack()
    assert again.message == first.message
    assert again.delivery_count > first.delivery_count == 1


async def test_unacked_goes_to_another_process_when_one_closes(
    harness: TransportHarness, namespace: str
) -> None:
    """When a transport closes with unacked deliveries, a peer in its namespace gets them."""
    dying, survivor = await harness.open(namespace), await harness.open(namespace)
    await dying.publish(CHANNEL, [_message(1), _message(2)])
    async with dying.subscribe(CHANNEL, "workers", prefetch=2) as deliveries:
        await (await _take(deliveries)).ack()
        held = await _take(deliveries)
        await dying.close()
    async with survivor.subscribe(CHANNEL, "workers", prefetch=2) as deliveries:
        again = await _take(deliveries)
        await again.ack()
        assert await _quiet(deliveries)
    assert again.message == held.message
    assert again.delivery_count >= 2


async def test_two_consumers_share_work_without_overlap(
    harness: TransportHarness, namespace: str
) -> None:
    """Two live consumers of one group split the messages; none reaches both."""
    one, two = await harness.open(namespace), await harness.open(namespace)
    received: dict[str, list[bytes]] = {"one": [], "two": []}
    total = 40

    async with (
        one.subscribe(CHANNEL, "workers", prefetch=2) as first,
        two.subscribe(CHANNEL, "workers", prefetch=2) as second,
    ):

        async def consume(name: str, deliveries: AsyncIterator[Delivery]) -> None:
            async for delivery in deliveries:
                received[name].append(delivery.message.body)
                await anyio.sleep(0.01)  # a little work, so the other consumer gets a turn
                await delivery.ack()
                if sum(map(len, received.values())) == total:
                    tg.cancel_scope.cancel()

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, "one", first)
                tg.start_soon(consume, "two", second)
                # Distinct keys: a transport ordering per key gives one key to one consumer.
                await one.publish(CHANNEL, [_message(n, key=f"run-{n}") for n in range(total)])

    assert not set(received["one"]) & set(received["two"])
    assert len(received["one"]) + len(received["two"]) == total
    assert received["one"]
    assert received["two"]


async def test_rejected_message_goes_to_dead_channel_with_reason(transport: Transport) -> None:
    """nack(requeue=False) moves the message to `dead`, saying why and where it came from."""
    await transport.publish(CHANNEL, [_message(1)])
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        await (await _take(deliveries)).nack(requeue=False)
        assert await _quiet(deliveries)
    async with transport.subscribe(DEAD_CHANNEL, "operators", prefetch=1) as dead:
        corpse = await _take(dead)
        await corpse.ack()
    assert corpse.message.body == b"m1"
    assert corpse.message.key == "run-1"
    assert corpse.message.headers[DEAD_REASON_HEADER] == REJECTED
    assert corpse.message.headers[DEAD_FROM_HEADER] == CHANNEL
    assert corpse.message.headers["n"] == "1"


async def test_requeued_too_often_goes_to_dead_channel(transport: Transport) -> None:
    """A message requeued on each of its `max_deliveries` deliveries ends up in `dead`."""
    await transport.publish(CHANNEL, [_message(1)])
    counts = []
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        for _ in range(LIMIT):
            delivery = await _take(deliveries)
            counts.append(delivery.delivery_count)
            await delivery.nack(requeue=True)
        assert await _quiet(deliveries)
    async with transport.subscribe(DEAD_CHANNEL, "operators", prefetch=1) as dead:
        corpse = await _take(dead)
        await corpse.ack()
    assert counts == list(range(1, LIMIT + 1))
    assert corpse.message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES
    assert corpse.message.headers[DEAD_FROM_HEADER] == CHANNEL


async def test_message_whose_consumers_keep_dying_goes_to_dead_channel(
    transport: Transport,
) -> None:
    """A message held unsettled by `max_deliveries` consumers in turn is not delivered again."""
    await transport.publish(CHANNEL, [_message(1)])
    for _ in range(LIMIT):
        async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
            await _take(deliveries)
    async with transport.subscribe(CHANNEL, "workers", prefetch=1) as deliveries:
        assert await _quiet(deliveries)
    async with transport.subscribe(DEAD_CHANNEL, "operators", prefetch=1) as dead:
        corpse = await _take(dead)
        await corpse.ack()
    assert corpse.message.body == b"m1"
    assert corpse.message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES
    assert corpse.message.headers[DEAD_FROM_HEADER] == CHANNEL


async def test_messages_of_one_key_arrive_in_order(transport: Transport) -> None:
    """Where the transport orders per key, each key's messages arrive in publish order."""
    if not transport.ORDERED_PER_KEY:
        pytest.skip(f"{transport.name} does not order messages per key")
    sent = [_message(n, key=f"run-{n % 3}") for n in range(60)]
    await transport.publish(CHANNEL, sent)
    async with transport.subscribe(CHANNEL, "workers", prefetch=10) as deliveries:
        got = await _take_acked(deliveries, len(sent))
    for key in ("run-0", "run-1", "run-2"):
        mine = [m.body for m in sent if m.key == key]
        assert [d.message.body for d in got if d.message.key == key] == mine


async def test_connection_cut_by_server_loses_nothing(
    harness: TransportHarness, transport: Transport
) -> None:
    """After the broker connection drops, acked messages stay done and unacked ones are not lost.

    A delivery held across the cut is either still the holder's to settle (where the
    broker tracks the consumer rather than its connection, as a Kafka group does), or void
    and delivered again with a higher count (where it dies with the connection's channel).
    Either way the subscription goes on receiving, and nothing is left over afterwards.
    """
    if harness.cut_connection is None:
        pytest.skip(f"{transport.name} has no broker connection to cut")
    await transport.publish(CHANNEL, [_message(n) for n in range(6)])
    async with transport.subscribe(CHANNEL, "workers", prefetch=10) as deliveries:
        await _take_acked(deliveries, 3)  # settled before the cut: must never come back
        held = [await _take(deliveries) for _ in range(3)]
        await harness.cut_connection(transport)
        with anyio.fail_after(WAIT):
            for delivery in held:
                await delivery.ack()  # maybe too late: whether it counts or not, it must not fail
        back = set() if harness.cut_keeps_deliveries else {d.message.body for d in held}
        await transport.publish(CHANNEL, [_message(99)])
        later = await _take_acked(deliveries, len(back) + 1)
        assert await _quiet(deliveries)
    assert {d.message.body for d in later} == back | {b"m99"}  # so no acked one came back
    assert all(d.delivery_count >= 2 for d in later if d.message.body in back)
    async with transport.subscribe(CHANNEL, "workers", prefetch=10) as deliveries:
        assert await _quiet(deliveries)


# --- broadcast channels: each open subscription gets every message ---------------------


def test_the_control_channel_is_a_broadcast_channel() -> None:
    """Workers' cancel messages travel on a broadcast channel; task queues do not."""
    assert is_broadcast(CONTROL_CHANNEL)
    assert not is_broadcast("tasks.default")


async def test_every_subscription_gets_every_broadcast_message(
    harness: TransportHarness, namespace: str
) -> None:
    """Two processes subscribed to a broadcast channel (one group name) each get all of it."""
    one, two = await harness.open(namespace), await harness.open(namespace)
    sender = await harness.open(namespace)
    async with (
        one.subscribe(CONTROL_CHANNEL, "workers", prefetch=10) as first,
        two.subscribe(CONTROL_CHANNEL, "workers", prefetch=10) as second,
    ):
        await sender.publish(CONTROL_CHANNEL, [_message(n) for n in range(5)])
        got_first = await _take_acked(first, 5)
        got_second = await _take_acked(second, 5)
        assert await _quiet(first)
        assert await _quiet(second)
    expected = sorted(f"m{n}".encode() for n in range(5))
    assert sorted(d.message.body for d in got_first) == expected
    assert sorted(d.message.body for d in got_second) == expected


async def test_a_broadcast_nobody_hears_is_not_kept(transport: Transport) -> None:
    """Publishing with no subscription open succeeds, and a later subscription never sees it."""
    await transport.publish(CONTROL_CHANNEL, [_message(1)])
    async with transport.subscribe(CONTROL_CHANNEL, "workers", prefetch=1) as deliveries:
        assert await _quiet(deliveries)
        await transport.publish(CONTROL_CHANNEL, [_message(2)])
        (delivery,) = await _take_acked(deliveries, 1)
    assert delivery.message == _message(2)


async def test_a_closed_broadcast_subscription_gets_nothing_more(
    harness: TransportHarness, namespace: str
) -> None:
    """What is published after a subscription closed goes to the open ones only."""
    stays, leaves = await harness.open(namespace), await harness.open(namespace)
    async with stays.subscribe(CONTROL_CHANNEL, "workers", prefetch=5) as staying:
        async with leaves.subscribe(CONTROL_CHANNEL, "workers", prefetch=5) as leaving:
            await stays.publish(CONTROL_CHANNEL, [_message(1)])
            await _take_acked(leaving, 1)
        await stays.publish(CONTROL_CHANNEL, [_message(2)])
        got = await _take_acked(staying, 2)
    assert [d.message for d in got] == [_message(1), _message(2)]
    async with leaves.subscribe(CONTROL_CHANNEL, "workers", prefetch=5) as again:
        assert await _quiet(again)
