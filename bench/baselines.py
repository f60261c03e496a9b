"""The machine's limits, measured in the same run: pgbench TPS and raw RabbitMQ msgs/s."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import uuid

from bench import _pg

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"


def pgbench_tps(seconds: int = 10, clients: int = 8, threads: int = 2) -> float:
    """TPS of pgbench's built-in simple-update script on a fresh scale-1 database.

    Default settings (synchronous_commit on); 8 clients, 2 threads.
    """
    database = _pg.create("pgbench")
    try:
        common = ["-h", "127.0.0.1", "-U", "postgres"]
        subprocess.run(
            ["pgbench", *common, "-i", "-q", "-s", "1", database],
            check=True,
            capture_output=True,
            timeout=300,
        )
        out = subprocess.run(
            [
                "pgbench",
                *common,
                "-c",
                str(clients),
                "-j",
                str(threads),
                "-T",
                str(seconds),
                "-b",
                "simple-update",
                database,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=seconds + 120,
        ).stdout
        match = re.search(r"tps = ([0-9.]+)", out)
        if not match:
            raise RuntimeError(f"no tps in pgbench output:\n{out}")
        return float(match.group(1))
    finally:
        _pg.drop(database)


async def rabbitmq_rate(messages: int = 20_000, in_flight: int = 256) -> float:
    """Messages/s through a fresh durable queue: persistent publishes with publisher confirms,
    consumed concurrently with manual acks; from the first publish to the last ack."""
    import aio_pika  # noqa: PLC0415

    connection = await aio_pika.connect(RABBITMQ_URL)
    name = f"bench-raw-{uuid.uuid4().hex[:10]}"
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=in_flight)
        queue = await consume_channel.declare_queue(name, durable=True)
        body = b"x" * 256
        done = asyncio.Event()
        received = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal received
            await message.ack()
            received += 1
            if received >= messages:
                done.set()

        tag = await queue.consume(on_message)
        gate = asyncio.Semaphore(in_flight)

        async def publish() -> None:
            async with gate:
                await publish_channel.default_exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=name,
                )

        begin = time.perf_counter()
        await asyncio.gather(*(publish() for _ in range(messages)))
        await asyncio.wait_for(done.wait(), timeout=300)
        elapsed = time.perf_counter() - begin
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return messages / elapsed
    finally:
        await connection.close()
