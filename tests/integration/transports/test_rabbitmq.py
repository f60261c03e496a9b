"""RabbitMQ-only behaviour that the shared contract suite does not cover."""

from __future__ import annotations

import uuid

import anyio
import pytest

from tests.brokers import delete_namespace
from treadle.config import TransportSettings
from treadle.messages import CONTROL_CHANNEL, Message
from treadle.transports import TransportUnavailable, build_transport
from treadle.transports.rabbitmq import DEFAULT_URL, RabbitMQTransport

pytestmark = pytest.mark.anyio


def _settings(url: str) -> TransportSettings:
    return TransportSettings(kind="rabbitmq", url=url, namespace="test-unreachable")


async def test_build_transport_picks_rabbitmq() -> None:
    """`kind = "rabbitmq"` builds the RabbitMQ adapter (imported only then)."""
    assert isinstance(build_transport(_settings("amqp://127.0.0.1/")), RabbitMQTransport)


async def test_unreachable_broker_is_transport_unavailable_without_password() -> None:
    """A broker that refuses connections raises TransportUnavailable, the password hidden."""
    transport = RabbitMQTransport(_settings("amqp://guest:s3cret@127.0.0.1:1/"))
    with pytest.raises(TransportUnavailable) as info:
        await transport.connect()
    assert info.value.url == "amqp://guest:***@127.0.0.1:1/"
    assert "s3cret" not in str(info.value)


async def test_publish_before_connect_is_transport_unavailable() -> None:
    """Publishing without a connection is a TransportUnavailable, not an AttributeError."""
    transport = RabbitMQTransport(_settings("amqp://127.0.0.1/"))
    with pytest.raises(TransportUnavailable):
        await transport.publish("events", [Message(key="k", body=b"x")])


async def _queues_named(prefix: str) -> list[str]:
    listing = await anyio.run_process(
        ["rabbitmqctl", "list_queues", "-q", "--no-table-headers", "name"]
    )
    return [name for name in listing.stdout.decode().split() if name.startswith(prefix)]


async def test_a_broadcast_subscription_leaves_no_queue_behind() -> None:
    """Each broadcast subscription has its own queue, and the broker deletes it after."""
    namespace = f"test-{uuid.uuid4().hex[:12]}"
    settings = TransportSettings(kind="rabbitmq", url=DEFAULT_URL, namespace=namespace)
    one, two = RabbitMQTransport(settings), RabbitMQTransport(settings)
    await one.connect()
    await two.connect()
    prefix = f"{namespace}.{CONTROL_CHANNEL}."
    try:
        async with (
            one.subscribe(CONTROL_CHANNEL, "workers", prefetch=1),
            two.subscribe(CONTROL_CHANNEL, "workers", prefetch=1),
        ):
            assert len(await _queues_named(prefix)) == 2
        assert await _queues_named(prefix) == []
    finally:
        await one.close()
        await two.close()
        # the durable fanout exchange stays until deleted
        await anyio.to_thread.run_sync(delete_namespace, "rabbitmq", DEFAULT_URL, namespace)
