"""One harness fixture per transport; the contract suite runs over every id in TRANSPORTS.

To add a transport: append its id to TRANSPORTS and write a `<id>_transport_harness`
fixture that yields a `TransportHarness` (and removes what its transports created).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import aio_pika
import anyio
import msgspec
import pytest

from tests.integration.transports._tansu import (
    ProxiedTansu,
    running_tansu,
    running_tansu_behind_proxy,
)
from treadle.config import TransportSettings
from treadle.ports import Transport
from treadle.transports.kafka import KafkaTransport
from treadle.transports.memory import MemoryBroker, MemoryTransport
from treadle.transports.nats import NatsTransport
from treadle.transports.rabbitmq import DEFAULT_URL, RabbitMQTransport

TRANSPORTS = ["memory", "rabbitmq", "nats", "kafka"]

MAX_DELIVERIES = 3
"""Every harness builds transports that dead-letter after this many deliveries."""


@dataclass(frozen=True)
class TransportHarness:
    """How the contract suite drives one kind of transport."""

    open: Callable[[str], Awaitable[Transport]]
    """A fresh connected transport in a namespace; two in one namespace act as two processes."""
    cut_connection: Callable[[Transport], Awaitable[None]] | None = None
    """Drop a transport's broker connection from the server side; None if it has none."""
    cut_keeps_deliveries: bool = False
    """Whether deliveries held across a cut can still be settled, instead of coming back.

    True where the broker tracks a consumer apart from its TCP connection (a Kafka group
    member outlives a connection that is re-established within its session timeout).
    """


@pytest.fixture
def anyio_backend() -> str:
    """Broker drivers are asyncio-only, so the whole suite runs on asyncio."""
    return "asyncio"


@pytest.fixture(params=TRANSPORTS)
def harness(request: pytest.FixtureRequest) -> TransportHarness:
    """The harness of each transport in turn."""
    return request.getfixturevalue(f"{request.param}_transport_harness")  # type: ignore[no-any-return]


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests can run in parallel on one broker."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _settings(kind: str, namespace: str, url: str = "") -> TransportSettings:
    return TransportSettings(
        kind=kind,  # type: ignore[arg-type]
        url=url,
        namespace=namespace,
        max_deliveries=MAX_DELIVERIES,
    )


@pytest.fixture
async def memory_transport_harness() -> AsyncIterator[TransportHarness]:
    """Memory transports; those in one namespace share a broker, like processes would."""
    brokers: dict[str, MemoryBroker] = {}
    opened: list[MemoryTransport] = []

    async def open_transport(namespace: str) -> Transport:
        broker = brokers.setdefault(namespace, MemoryBroker())
        transport = MemoryTransport(_settings("memory", namespace), broker=broker)
        await transport.connect()
        opened.append(transport)
        return transport

    yield TransportHarness(open=open_transport)
    for transport in opened:
        await transport.close()


@pytest.fixture
async def rabbitmq_transport_harness() -> AsyncIterator[TransportHarness]:
    """RabbitMQ transports on the local broker; their queues and exchanges go afterwards."""
    opened: list[RabbitMQTransport] = []

    async def open_transport(namespace: str) -> Transport:
        transport = RabbitMQTransport(_settings("rabbitmq", namespace, DEFAULT_URL))
        await transport.connect()
        opened.append(transport)
        return transport

    async def cut_connection(transport: Transport) -> None:
        assert isinstance(transport, RabbitMQTransport)
        await _close_rabbitmq_connection(transport.connection_name)

    yield TransportHarness(open=open_transport, cut_connection=cut_connection)
    queues = set().union(*(transport.declared_queues for transport in opened))
    exchanges = set().union(*(transport.declared_exchanges for transport in opened))
    for transport in opened:
        await transport.close()
    await _delete_rabbitmq_declarations(queues, exchanges)


async def _close_rabbitmq_connection(connection_name: str) -> None:
    """Close, from the server, only the connection with this client-provided name."""
    listing = await anyio.run_process(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"]
    )
    marker = f'{{"connection_name","{connection_name}"}}'
    pids = [
        match.group(0)
        for line in listing.stdout.decode().splitlines()
        if marker in line and (match := re.match(r"<[^>]+>", line))
    ]
    assert pids, f"no broker connection is named {connection_name}"
    for pid in pids:
        await anyio.run_process(["rabbitmqctl", "close_connection", pid, "contract test"])


async def _delete_rabbitmq_declarations(queues: set[str], exchanges: set[str]) -> None:
    connection = await aio_pika.connect(DEFAULT_URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)


@pytest.fixture
async def nats_transport_harness() -> AsyncIterator[TransportHarness]:
    """NATS transports on the local server (ack_wait 2s); their streams are deleted afterwards."""
    opened: list[NatsTransport] = []

    async def open_transport(namespace: str) -> Transport:
        settings = msgspec.structs.replace(
            _settings("nats", namespace, "nats://127.0.0.1:4222"), ack_wait_seconds=2.0
        )
        transport = NatsTransport(settings)
        await transport.connect()
        opened.append(transport)
        return transport

    yield TransportHarness(open=open_transport)
    for transport in opened:
        await transport.close()
    for namespace in {transport.stream for transport in opened}:
        cleaner = NatsTransport(TransportSettings(url="nats://127.0.0.1:4222"))
        await cleaner.connect()
        cleaner.stream = namespace
        await cleaner.delete_stream()
        await cleaner.close()


@pytest.fixture(scope="session")
def tansu() -> Iterator[str]:
    """A Tansu (Kafka-protocol) broker for this test process; yields its address."""
    with running_tansu() as address:
        yield address


@pytest.fixture(scope="session")
def proxied_tansu() -> Iterator[ProxiedTansu]:
    """A Tansu broker for this test process that its clients reach through a TCP proxy."""
    with running_tansu_behind_proxy() as broker:
        yield broker


@pytest.fixture
async def kafka_transport_harness(
    proxied_tansu: ProxiedTansu,
) -> AsyncIterator[TransportHarness]:
    """Kafka transports through a proxy to Tansu; their topics are deleted afterwards.

    Cutting closes every connection through the proxy (all of this test's Kafka clients,
    as tests in one process run one at a time), like a network fault would.
    """
    opened: list[KafkaTransport] = []

    async def open_transport(namespace: str) -> Transport:
        settings = msgspec.structs.replace(
            _settings("kafka", namespace, f"kafka://{proxied_tansu.address}"),
            kafka_idempotence=False,  # Tansu has no idempotent producer (see _tansu.py)
        )
        transport = KafkaTransport(settings)
        await transport.connect()
        opened.append(transport)
        return transport

    async def cut_connection(_: Transport) -> None:
        assert await proxied_tansu.cut(), "no kafka connection went through the proxy"

    yield TransportHarness(
        open=open_transport, cut_connection=cut_connection, cut_keeps_deliveries=True
    )
    for transport in opened:
        await transport.close()
    if opened:
        cleaner = KafkaTransport(opened[0]._settings)
        await cleaner.connect()
        await cleaner.delete_topics()
        await cleaner.close()
