"""Clean-up of what a test's broker namespace leaves on the shared local brokers.

Quorum queues, fanout exchanges and JetStream streams outlive the processes that declared
them; a day of test runs left hundreds behind, and RabbitMQ replaying them at start-up held its port
open for minutes without answering. Every test that points `treadle serve` at a shared
broker deletes its namespace afterwards through `delete_namespace`.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping

import aio_pika
import nats
from nats.js.errors import NotFoundError

from treadle.config import TransportSettings
from treadle.transports.nats import NatsTransport

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
NATS_URL = "nats://127.0.0.1:4222"


def _rabbitmq_names(kind: str, prefix: str) -> list[str]:
    """The broker's queues or exchanges whose names start with `prefix` (rabbitmqctl lists all)."""
    listing = subprocess.run(
        ["rabbitmqctl", f"list_{kind}", "-q", "--no-table-headers", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [name for name in listing.stdout.split() if name.startswith(prefix)]


def rabbitmq_queues(prefix: str) -> list[str]:
    """The broker's queues whose names start with `prefix`."""
    return _rabbitmq_names("queues", prefix)


async def _delete_rabbitmq(url: str, queues: list[str], exchanges: list[str]) -> None:
    connection = await aio_pika.connect(url, timeout=15)
    async with connection:
        channel = await connection.channel()
        for name in queues:
            await channel.queue_delete(name)
        for name in exchanges:
            await channel.exchange_delete(name)


async def _delete_stream(url: str, stream: str) -> None:
    connection = await nats.connect(url, connect_timeout=10, allow_reconnect=False)
    try:
        await connection.jetstream().delete_stream(stream)
    except NotFoundError:
        pass  # nothing was ever published in this namespace
    finally:
        await connection.close()


def delete_namespace(kind: str, url: str, namespace: str) -> None:
    """Delete `namespace`'s queues and broadcast exchanges (RabbitMQ) or stream (NATS); Tansu
    dies with its test."""
    if kind == "rabbitmq":
        queues = rabbitmq_queues(f"{namespace}.")
        exchanges = _rabbitmq_names("exchanges", f"{namespace}.")
        if queues or exchanges:
            asyncio.run(asyncio.wait_for(_delete_rabbitmq(url, queues, exchanges), 60))
    elif kind == "nats":
        stream = NatsTransport(TransportSettings(kind="nats", url=url, namespace=namespace)).stream
        asyncio.run(asyncio.wait_for(_delete_stream(url, stream), 60))


def delete_namespace_of(env: Mapping[str, str]) -> None:
    """`delete_namespace` for a `treadle serve` environment (TREADLE_TRANSPORT and friends)."""
    kind = env.get("TREADLE_TRANSPORT", "memory")
    namespace = env.get("TREADLE_TRANSPORT__NAMESPACE")
    if kind in ("rabbitmq", "nats") and namespace:
        default = RABBITMQ_URL if kind == "rabbitmq" else NATS_URL
        delete_namespace(kind, env.get("TREADLE_BROKER_URL", default), namespace)
