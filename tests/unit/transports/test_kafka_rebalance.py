"""Kafka subscription bookkeeping across a rebalance, with a scripted consumer (no broker)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from aiokafka import ConsumerRecord, TopicPartition

from treadle.config import TransportSettings
from treadle.transports.kafka import KafkaTransport, _Subscription

pytestmark = pytest.mark.anyio

PARTITION = TopicPartition("ns.tasks.q", 0)


@pytest.fixture
def anyio_backend() -> str:
    """aiokafka runs on asyncio only."""
    return "asyncio"


def _record(offset: int) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=PARTITION.topic,
        partition=PARTITION.partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"run-1",
        value=f"m{offset}".encode(),
        checksum=None,
        serialized_key_size=5,
        serialized_value_size=2,
        headers=(),
    )


class _ScriptedConsumer:
    """Returns the records it is given from `getmany`, as a consumer reading a partition."""

    def __init__(self) -> None:
        self.pending: list[ConsumerRecord[bytes, bytes]] = []
        self.commits: list[dict[TopicPartition, int]] = []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        if not self.pending:
            await anyio.sleep(timeout_ms / 1000)
            return {}
        batch, self.pending = self.pending[:max_records], self.pending[max_records:]
        return {PARTITION: batch}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)

    async def stop(self) -> None:
        pass


def _subscription(prefetch: int) -> tuple[_Subscription, _ScriptedConsumer]:
    transport = KafkaTransport(TransportSettings(kind="kafka", url="kafka://127.0.0.1:1"))
    subscription = _Subscription(transport, "tasks.q", prefetch)
    consumer = _ScriptedConsumer()
    subscription.consumer = consumer
    return subscription, consumer


async def test_partition_returning_to_its_holder_is_read_again_despite_full_prefetch() -> None:
    """A revoked delivery stops taking prefetch room, so the member reads its partition anew."""
    subscription, consumer = _subscription(prefetch=1)
    consumer.pending = [_record(0)]
    held = await anext(subscription)
    # The group revokes every partition before reassigning, here to the same member,
    # whose consumer then reads again from the committed offset.
    await subscription.revoke([PARTITION])
    consumer.pending = [_record(0)]
    with anyio.fail_after(5):
        again = await anext(subscription)
    assert again.message == held.message
    await held.ack()  # stale: commits nothing
    assert consumer.commits == []
    await again.ack()
    assert consumer.commits == [{PARTITION: 1}]


async def test_only_deliveries_still_held_are_given_back_on_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Closing requeues what it holds, not a revoked delivery its partition's owner rereads."""
    subscription, consumer = _subscription(prefetch=2)
    requeued: list[bytes] = []

    async def requeue(channel: str, message: Any, deliveries: int) -> None:
        requeued.append(message.body)

    monkeypatch.setattr(subscription.transport, "requeue", requeue)
    consumer.pending = [_record(0)]
    await anext(subscription)
    await subscription.revoke([PARTITION])
    consumer.pending = [_record(1)]
    await anext(subscription)
    await subscription.close()
    assert requeued == [b"m1"]
    assert consumer.commits == [{PARTITION: 2}]
