"""Behaviour of the NATS JetStream and Kafka adapters beyond the shared contract.

NATS runs against the server on 127.0.0.1:4222; Kafka against a Tansu broker that the
session starts (see `_tansu.py`). Each test uses its own namespace and removes it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from tests.integration.transports._proxy import tcp_proxy
from tests.ports import free_port
from treadle.config import TransportSettings
from treadle.messages import CONTROL_CHANNEL, DEAD_CHANNEL, Message
from treadle.ports import Delivery
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, MAX_DELIVERIES, REJECTED
from treadle.transports._errors import TransportUnavailable
from treadle.transports.kafka import KafkaTransport, _PartitionLedger
from treadle.transports.nats import NatsTransport

NATS_URL = "nats://127.0.0.1:4222"
WAIT = 20.0
REBALANCE_WAIT = 90.0
"""Upper bound on any single wait for a message; generous for a loaded 2-core machine."""


def _message(n: int, key: str = "run-1") -> Message:
    return Message(key=key, body=f"m{n}".encode(), headers={"event_id": f"e{n}"})


async def _next(deliveries: AsyncIterator[Delivery]) -> Delivery:
    with anyio.fail_after(WAIT):
        return await deliveries.__anext__()


async def _nothing_within(deliveries: AsyncIterator[Delivery], seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        await deliveries.__anext__()
        return False
    return True


# --- NATS -------------------------------------------------------------------------------


def _nats_settings(url: str = NATS_URL) -> TransportSettings:
    return TransportSettings(
        kind="nats",
        url=url,
        namespace=f"t{uuid.uuid4().hex[:12]}",
        max_deliveries=3,
        ack_wait_seconds=2.0,
    )


@pytest.fixture
async def nats_stack() -> AsyncIterator[AsyncExitStack]:
    """Closes every transport a test opened, then deletes their streams."""
    async with AsyncExitStack() as stack:
        yield stack


async def _open_nats(stack: AsyncExitStack, settings: TransportSettings) -> NatsTransport:
    transport = NatsTransport(settings)
    await transport.connect()
    stack.push_async_callback(_close_and_delete, transport, settings)
    return transport


async def _close_and_delete(transport: NatsTransport, settings: TransportSettings) -> None:
    await transport.close()
    cleaner = NatsTransport(TransportSettings(url=NATS_URL, namespace=settings.namespace))
    await cleaner.connect()
    await cleaner.delete_stream()
    await cleaner.close()


@pytest.mark.anyio
async def test_nats_round_trip_keeps_key_body_and_headers(nats_stack: AsyncExitStack) -> None:
    """A message published before anyone subscribes arrives intact on first delivery."""
    transport = await _open_nats(nats_stack, _nats_settings())
    sent = _message(1, key="run-42")
    await transport.publish("tasks.default", [sent])
    async with transport.subscribe("tasks.default", "workers", prefetch=4) as deliveries:
        delivery = await _next(deliveries)
        assert delivery.message == sent
        assert delivery.delivery_count == 1
        await delivery.ack()


@pytest.mark.anyio
async def test_nats_group_members_compete(nats_stack: AsyncExitStack) -> None:
    """Two members of one group share the messages, each taken by exactly one member."""
    settings = _nats_settings()
    first = await _open_nats(nats_stack, settings)
    second = await _open_nats(nats_stack, settings)
    await first.publish("tasks.q", [_message(n) for n in range(20)])
    seen: dict[int, list[bytes]] = {1: [], 2: []}
    all_seen = anyio.Event()

    async def consume(transport: NatsTransport, member: int) -> None:
        async with transport.subscribe("tasks.q", "workers", prefetch=2) as deliveries:
            async for delivery in deliveries:
                seen[member].append(delivery.message.body)
                await delivery.ack()
                if len(seen[1]) + len(seen[2]) == 20:
                    all_seen.set()
                await anyio.sleep(0.05)  # let the other member take some too

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, first, 1)
            tg.start_soon(consume, second, 2)
            await all_seen.wait()
            tg.cancel_scope.cancel()
    assert sorted(seen[1] + seen[2]) == sorted(_message(n).body for n in range(20))
    assert seen[1]
    assert seen[2]


@pytest.mark.anyio
async def test_nats_each_group_gets_every_message(nats_stack: AsyncExitStack) -> None:
    """Two different groups on one channel each receive the whole stream."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("events", [_message(1), _message(2)])
    for group in ("orchestrators", "auditors"):
        async with transport.subscribe("events", group, prefetch=8) as deliveries:
            bodies = [(await _next(deliveries)).message.body for _ in range(2)]
        assert sorted(bodies) == [b"m1", b"m2"]


@pytest.mark.anyio
async def test_nats_unsettled_message_returns_when_member_leaves(
    nats_stack: AsyncExitStack,
) -> None:
    """A delivery left unsettled by a member that leaves goes to the next member."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("tasks.q", [_message(1)])
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        await _next(deliveries)
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        again = await _next(deliveries)
        assert again.message.body == b"m1"
        assert again.delivery_count == 2
        await again.ack()


@pytest.mark.anyio
async def test_nats_redelivers_after_ack_wait_when_holder_hangs(
    nats_stack: AsyncExitStack,
) -> None:
    """A member that holds a delivery past ack_wait loses it to another member.

    Redelivered is read from the consumer sequence: the server's own delivery count
    (`num_delivered`) now and then still says 1 on such a redelivery (about 1 run in 5
    here; nats-io/nats-server#5346), so the count is only checked not to go backwards.
    """
    settings = _nats_settings()
    hung = await _open_nats(nats_stack, settings)
    healthy = await _open_nats(nats_stack, settings)
    await hung.publish("tasks.q", [_message(1)])
    async with (
        hung.subscribe("tasks.q", "workers", prefetch=1) as stuck,
        healthy.subscribe("tasks.q", "workers", prefetch=1) as deliveries,
    ):
        first = await _next(stuck)  # never settled, as by a process that froze
        again = await _next(deliveries)
        assert again.message.body == first.message.body
        assert first.msg.metadata.sequence.stream == again.msg.metadata.sequence.stream
        assert again.msg.metadata.sequence.consumer > first.msg.metadata.sequence.consumer
        assert again.delivery_count >= first.delivery_count == 1
        await again.ack()


@pytest.mark.anyio
async def test_nats_prefetch_bounds_unsettled(nats_stack: AsyncExitStack) -> None:
    """A member holds at most `prefetch` unsettled deliveries; settling one frees room."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("tasks.q", [_message(n) for n in range(3)])
    async with transport.subscribe("tasks.q", "workers", prefetch=2) as deliveries:
        held = [await _next(deliveries), await _next(deliveries)]
        assert await _nothing_within(deliveries, 1.5)
        await held[0].ack()
        third = await _next(deliveries)
        assert third.message.body not in {d.message.body for d in held}


@pytest.mark.anyio
async def test_nats_dead_after_max_deliveries(nats_stack: AsyncExitStack) -> None:
    """Nacked on each of its `max_deliveries` deliveries, a message lands in `dead`."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("tasks.q", [_message(1)])
    counts = []
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        for _ in range(3):
            delivery = await _next(deliveries)
            counts.append(delivery.delivery_count)
            await delivery.nack()
        assert await _nothing_within(deliveries, 1.0)
    assert counts == [1, 2, 3]
    async with transport.subscribe(DEAD_CHANNEL, "ops", prefetch=1) as dead:
        poison = await _next(dead)
    assert poison.message.body == b"m1"
    assert poison.message.key == "run-1"
    assert poison.message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES
    assert poison.message.headers[DEAD_FROM_HEADER] == "tasks.q"


@pytest.mark.anyio
async def test_nats_rejected_goes_dead_at_once(nats_stack: AsyncExitStack) -> None:
    """nack(requeue=False) moves the message to `dead` with reason `rejected`."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("tasks.q", [_message(1)])
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        await (await _next(deliveries)).nack(requeue=False)
        assert await _nothing_within(deliveries, 1.0)
    async with transport.subscribe(DEAD_CHANNEL, "ops", prefetch=1) as dead:
        poison = await _next(dead)
    assert poison.message.headers[DEAD_REASON_HEADER] == REJECTED
    assert poison.message.headers["event_id"] == "e1"


@pytest.mark.anyio
async def test_nats_last_attempt_lost_by_a_dead_member_goes_dead(
    nats_stack: AsyncExitStack,
) -> None:
    """A message whose holder died during its last allowed delivery still reaches `dead`."""
    transport = await _open_nats(nats_stack, _nats_settings())
    await transport.publish("tasks.q", [_message(1)])
    for _ in range(3):  # each member takes it and dies without settling
        async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
            await _next(deliveries)
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        assert await _nothing_within(deliveries, 1.5)
    async with transport.subscribe(DEAD_CHANNEL, "ops", prefetch=1) as dead:
        poison = await _next(dead)
    assert poison.message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES


@pytest.mark.anyio
async def test_nats_connect_twice_reuses_the_stream(nats_stack: AsyncExitStack) -> None:
    """A second process on the same namespace adopts the stream and sees its messages."""
    settings = _nats_settings()
    first = await _open_nats(nats_stack, settings)
    await first.publish("tasks.q", [_message(1)])
    second = await _open_nats(nats_stack, settings)
    async with second.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        assert (await _next(deliveries)).message.body == b"m1"


@pytest.mark.anyio
async def test_nats_unreachable_server_is_transport_unavailable() -> None:
    """connect() to a port nobody listens on fails fast with TransportUnavailable."""
    port = free_port()
    transport = NatsTransport(_nats_settings(url=f"nats://u:secret@127.0.0.1:{port}"))
    with anyio.fail_after(WAIT), pytest.raises(TransportUnavailable) as caught:
        await transport.connect()
    assert caught.value.url == f"nats://u:***@127.0.0.1:{port}"


@pytest.mark.anyio
async def test_nats_consumer_survives_a_dropped_connection(nats_stack: AsyncExitStack) -> None:
    """After the network drops every connection, the client reconnects and consumes on."""
    async with tcp_proxy(upstream_port=4222) as proxy:
        settings = _nats_settings(url=f"nats://127.0.0.1:{proxy.port}")
        transport = await _open_nats(nats_stack, settings)
        async with transport.subscribe("tasks.q", "workers", prefetch=4) as deliveries:
            await transport.publish("tasks.q", [_message(1)])
            await (await _next(deliveries)).ack()
            await proxy.drop_connections()
            with anyio.fail_after(WAIT):
                while True:  # publishing fails until the client has reconnected
                    try:
                        await transport.publish("tasks.q", [_message(2)])
                        break
                    except TransportUnavailable:
                        await anyio.sleep(0.2)
            after = await _next(deliveries)
            assert after.message.body == b"m2"
            await after.ack()
        await transport.close()  # before the proxy goes away


# --- Kafka ------------------------------------------------------------------------------


@pytest.fixture
def kafka_bootstrap(tansu: str) -> str:
    """The address of this process's Tansu broker (the session fixture in conftest)."""
    return tansu


def _kafka_settings(bootstrap: str, partitions: int = 4) -> TransportSettings:
    return TransportSettings(
        kind="kafka",
        url=f"kafka://{bootstrap}",
        namespace=f"t{uuid.uuid4().hex[:12]}",
        max_deliveries=3,
        partitions=partitions,
        kafka_idempotence=False,  # Tansu has no InitProducerId; see _tansu.py
    )


@pytest.fixture
async def kafka_stack() -> AsyncIterator[AsyncExitStack]:
    """Closes every transport a test opened, then deletes their topics."""
    async with AsyncExitStack() as stack:
        yield stack


async def _open_kafka(stack: AsyncExitStack, settings: TransportSettings) -> KafkaTransport:
    transport = KafkaTransport(settings)
    await transport.connect()
    stack.push_async_callback(_close_and_drop_topics, transport)
    return transport


async def _close_and_drop_topics(transport: KafkaTransport) -> None:
    if not transport.closed:
        await transport.delete_topics()
    await transport.close()


def test_ledger_commits_only_the_contiguous_settled_prefix() -> None:
    """A slow offset holds the commit point back until it settles too."""
    ledger = _PartitionLedger()
    for offset in (5, 6, 7):
        ledger.track(offset)
    assert not ledger.settle(6)
    assert not ledger.settle(7)
    assert ledger.safe is None
    assert ledger.settle(5)
    assert ledger.safe == 8


def test_ledger_moves_step_by_step() -> None:
    """Settling in order moves the commit point one past each settled offset."""
    ledger = _PartitionLedger()
    ledger.track(0)
    ledger.track(1)
    assert ledger.settle(0)
    assert ledger.safe == 1
    assert ledger.settle(1)
    assert ledger.safe == 2


@pytest.mark.anyio
async def test_kafka_round_trip_keeps_key_body_and_headers(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """A message published before the group exists arrives intact on first delivery."""
    transport = await _open_kafka(kafka_stack, _kafka_settings(kafka_bootstrap))
    sent = _message(1, key="run-42")
    await transport.publish("tasks.default", [sent])
    async with transport.subscribe("tasks.default", "workers", prefetch=4) as deliveries:
        delivery = await _next(deliveries)
        assert delivery.message == sent
        assert delivery.delivery_count == 1
        await delivery.ack()


@pytest.mark.anyio
async def test_kafka_keeps_order_per_key(kafka_stack: AsyncExitStack, kafka_bootstrap: str) -> None:
    """Messages with one key are delivered in the order they were published."""
    transport = await _open_kafka(kafka_stack, _kafka_settings(kafka_bootstrap))
    sent = [_message(n, key=f"run-{n % 3}") for n in range(30)]
    await transport.publish("events", sent[:15])
    await transport.publish("events", sent[15:])
    received: list[Message] = []
    async with transport.subscribe("events", "orchestrators", prefetch=1) as deliveries:
        while len(received) < 30:
            delivery = await _next(deliveries)
            received.append(delivery.message)
            await delivery.ack()
    for key in ("run-0", "run-1", "run-2"):
        assert [m for m in received if m.key == key] == [m for m in sent if m.key == key]


@pytest.mark.anyio
async def test_kafka_slow_message_holds_back_the_commit(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """Later offsets acked before a slow one are not committed past it; then all are."""
    settings = _kafka_settings(kafka_bootstrap, partitions=1)
    transport = await _open_kafka(kafka_stack, settings)
    partition = TopicPartition(transport.topic("tasks.q"), 0)
    await transport.publish("tasks.q", [_message(n) for n in range(3)])
    async with transport.subscribe("tasks.q", "workers", prefetch=3) as deliveries:
        slow, *quick = [await _next(deliveries) for _ in range(3)]
        for delivery in quick:
            await delivery.ack()
        group_id = transport.group_id("tasks.q", "workers")
        assert await _committed(kafka_bootstrap, group_id, partition) is None
        await slow.ack()
        assert await _committed(kafka_bootstrap, group_id, partition) == 3
    assert slow.message.body == b"m0"


async def _committed(bootstrap: str, group_id: str, partition: TopicPartition) -> int | None:
    """The group's committed offset on a partition, as the broker reports it."""
    # A consumer that never subscribes reads the offset without joining the group.
    # (aiokafka's admin offset listing cannot decode this Tansu's reply.)
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group_id)
    await reader.start()
    try:
        return await reader.committed(partition)  # type: ignore[no-any-return]
    finally:
        await reader.stop()


@pytest.mark.anyio
async def test_kafka_group_members_compete(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """Two members of a group split the partitions; each message reaches one of them."""
    settings = _kafka_settings(kafka_bootstrap)
    first = await _open_kafka(kafka_stack, settings)
    second = await _open_kafka(kafka_stack, settings)
    seen: dict[int, list[bytes]] = {1: [], 2: []}
    all_seen = anyio.Event()

    async def consume(deliveries: AsyncIterator[Delivery], member: int) -> None:
        async for delivery in deliveries:
            seen[member].append(delivery.message.body)
            await delivery.ack()
            if len(seen[1]) + len(seen[2]) >= 20:
                all_seen.set()

    async with (
        first.subscribe("tasks.q", "workers", prefetch=4) as one,
        second.subscribe("tasks.q", "workers", prefetch=4) as two,
    ):
        await _wait_for_split(one, two)
        await first.publish("tasks.q", [_message(n, key=f"run-{n}") for n in range(20)])
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consume, one, 1)
                tg.start_soon(consume, two, 2)
                await all_seen.wait()
                tg.cancel_scope.cancel()
    assert sorted(seen[1] + seen[2]) == sorted(_message(n).body for n in range(20))
    assert seen[1]
    assert seen[2]


async def _wait_for_split(*members: AsyncIterator[Delivery]) -> None:
    """Wait until the group has given every member some partitions."""
    consumers = [member.consumer for member in members]  # type: ignore[attr-defined]
    with anyio.fail_after(WAIT):
        while not all(consumer.assignment() for consumer in consumers):
            for member in members:  # polling drives the group protocol
                await _nothing_within(member, 0.1)


@pytest.mark.anyio
async def test_kafka_unsettled_message_returns_when_member_leaves(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """A record left unsettled by a member that leaves is delivered to the next member."""
    transport = await _open_kafka(kafka_stack, _kafka_settings(kafka_bootstrap))
    await transport.publish("tasks.q", [_message(1)])
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        await _next(deliveries)
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        again = await _next(deliveries)
        assert again.message.body == b"m1"
        await again.ack()


@pytest.mark.anyio
async def test_kafka_rebalance_redelivers_unsettled_records(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """When a member joins, a record another member still holds is delivered again.

    The partition goes to either member (the group orders them by their random ids); when
    it goes back to the one holding the record, that member reads it again itself.
    """
    settings = _kafka_settings(kafka_bootstrap, partitions=1)
    first = await _open_kafka(kafka_stack, settings)
    second = await _open_kafka(kafka_stack, settings)
    await first.publish("tasks.q", [_message(1)])
    async with first.subscribe("tasks.q", "workers", prefetch=1) as one:
        held = await _next(one)
        async with second.subscribe("tasks.q", "workers", prefetch=1) as two:
            # A rebalance on Tansu takes 5-10 s when idle and much longer on a busy CI box.
            again = await _first_of(one, two, wait=REBALANCE_WAIT)
            assert again.message == held.message
            await held.ack()  # stale: its partition was revoked, so it commits nothing
            await again.ack()


async def _first_of(*members: AsyncIterator[Delivery], wait: float = WAIT) -> Delivery:
    """The first delivery any of the members receives."""
    with anyio.fail_after(wait):
        while True:
            for member in members:
                with anyio.move_on_after(0.2):
                    return await member.__anext__()


@pytest.mark.anyio
async def test_kafka_dead_after_max_deliveries(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """Requeued on each of its `max_deliveries` deliveries, a record lands in `dead`."""
    transport = await _open_kafka(kafka_stack, _kafka_settings(kafka_bootstrap))
    await transport.publish("tasks.q", [_message(1)])
    counts = []
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        for _ in range(3):
            delivery = await _next(deliveries)
            counts.append(delivery.delivery_count)
            assert delivery.message == _message(1)
            await delivery.nack()
        assert await _nothing_within(deliveries, 1.0)
    assert counts == [1, 2, 3]
    async with transport.subscribe(DEAD_CHANNEL, "ops", prefetch=1) as dead:
        poison = await _next(dead)
    assert poison.message.key == "run-1"
    assert poison.message.headers[DEAD_REASON_HEADER] == MAX_DELIVERIES
    assert poison.message.headers[DEAD_FROM_HEADER] == "tasks.q"


@pytest.mark.anyio
async def test_kafka_rejected_goes_dead_at_once(
    kafka_stack: AsyncExitStack, kafka_bootstrap: str
) -> None:
    """nack(requeue=False) moves the record to `dead` with reason `rejected`."""
    transport = await _open_kafka(kafka_stack, _kafka_settings(kafka_bootstrap))
    await transport.publish("tasks.q", [_message(1)])
    async with transport.subscribe("tasks.q", "workers", prefetch=1) as deliveries:
        await (await _next(deliveries)).nack(requeue=False)
        assert await _nothing_within(deliveries, 1.0)
    async with transport.subscribe(DEAD_CHANNEL, "ops", prefetch=1) as dead:
        poison = await _next(dead)
    assert poison.message.headers[DEAD_REASON_HEADER] == REJECTED
    assert poison.message.body == b"m1"


@pytest.mark.anyio
async def test_kafka_unreachable_broker_is_transport_unavailable() -> None:
    """connect() to a port nobody listens on fails with TransportUnavailable."""
    port = free_port()
    transport = KafkaTransport(_kafka_settings(f"127.0.0.1:{port}"))
    with anyio.fail_after(WAIT * 3), pytest.raises(TransportUnavailable) as caught:
        await transport.connect()
    assert caught.value.url == f"127.0.0.1:{port}"


# --- helpers ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_nats_broadcast_subscription_leaves_no_consumer_behind(
    nats_stack: AsyncExitStack,
) -> None:
    """A broadcast subscription's ephemeral consumer exists while open and is deleted after."""
    transport = await _open_nats(nats_stack, _nats_settings())
    js = transport._jetstream()
    async with transport.subscribe(CONTROL_CHANNEL, "workers", prefetch=1):
        assert len(await js.consumers_info(transport.stream)) == 1
    assert await js.consumers_info(transport.stream) == []
