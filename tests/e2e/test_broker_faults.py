"""Broker faults: an unreachable broker at start-up, and undecodable messages on a live cluster."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from tests.e2e.cluster import RABBITMQ_URL, broker_env, cluster_on, postgres_database
from tests.e2e.conftest import ROOT, free_port
from tests.e2e.test_core_flows import DIAMOND, register
from treadle.config import TransportSettings
from treadle.messages import DEAD_CHANNEL, EVENTS_CHANNEL, Message, tasks_channel
from treadle.transports import DEAD_FROM_HEADER, DEAD_REASON_HEADER, build_transport

pytestmark = pytest.mark.e2e

CONNECT_WINDOW = 3.0


def test_an_unreachable_broker_is_retried_then_named_in_one_line_and_exit_code(
    tmp_path: Path,
) -> None:
    """A worker whose broker refuses connections logs each retry, then exits 1 with one line."""
    port = free_port()  # nothing listens there
    env = {
        **os.environ,
        "TREADLE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'treadle.db'}",
        "TREADLE_TRANSPORT": "rabbitmq",
        "TREADLE_BROKER_URL": f"amqp://guest:s3cret@127.0.0.1:{port}/",
        "TREADLE_TRANSPORT__CONNECT_TIMEOUT_SECONDS": str(CONNECT_WINDOW),
        "TREADLE_LOG__FORMAT": "json",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "treadle.cli",
            "serve",
            "--roles",
            "worker",
            "--port",
            str(free_port()),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    redacted = f"amqp://guest:***@127.0.0.1:{port}/"
    assert done.returncode == 1, done.stdout + done.stderr
    assert "s3cret" not in done.stdout + done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1, done.stderr
    assert error[0].startswith(f"treadle: cannot reach the broker at {redacted} after ")
    retries = [
        line
        for line in map(json.loads, done.stdout.splitlines())
        if line["message"].startswith("cannot connect to the broker")
    ]
    assert len(retries) >= 2, done.stdout
    assert {line["url"] for line in retries} == {redacted}
    assert [line["attempt"] for line in retries] == list(range(1, len(retries) + 1))


GARBAGE = [b"\xff\xfenot json at all", b'{"event_type": "task.completed"}']


@pytest.mark.timeout(180)
def test_undecodable_messages_are_dead_lettered_while_runs_keep_completing(
    tmp_path: Path,
) -> None:
    """Garbage on the events and tasks channels lands on `dead`; the consumers keep working."""
    env = broker_env("rabbitmq", RABBITMQ_URL)
    settings = TransportSettings(
        kind="rabbitmq", url=RABBITMQ_URL, namespace=env["TREADLE_TRANSPORT__NAMESPACE"]
    )
    with postgres_database() as url, cluster_on(tmp_path, url, env) as cluster:
        api, orchestrator, worker = cluster.start(
            "api", "orchestrator", "worker", handlers=["tests.e2e.handlers"]
        )
        register(api, DIAMOND)
        before = api.wait_for_run(api.start("diamond", {"n": 1}).json()["id"], timeout=60)
        asyncio.run(_publish_garbage(settings))
        after = api.wait_for_run(api.start("diamond", {"n": 2}).json()["id"], timeout=60)
        dead = asyncio.run(_drain_dead(settings, len(GARBAGE) * 2))
        logs = {"orchestrator": orchestrator.log.read_text(), "worker": worker.log.read_text()}
        assert cluster.stop() == [0, 0, 0]
    assert (before["status"], after["status"]) == ("completed", "completed")
    origins = sorted(headers[DEAD_FROM_HEADER] for headers, _ in dead)
    assert origins == sorted([EVENTS_CHANNEL, tasks_channel("default")] * len(GARBAGE))
    assert {body for _, body in dead} == set(GARBAGE)
    assert {headers[DEAD_REASON_HEADER] for headers, _ in dead} == {"rejected"}
    assert _dead_letter_logs(logs["orchestrator"], "undecodable event") == len(GARBAGE)
    assert _dead_letter_logs(logs["worker"], "undecodable task message") == len(GARBAGE)


async def _publish_garbage(settings: TransportSettings) -> None:
    transport = build_transport(settings)
    await transport.connect()
    try:
        for channel in (EVENTS_CHANNEL, tasks_channel("default")):
            messages = [Message(key="garbage", body=body) for body in GARBAGE]
            await transport.publish(channel, messages)
    finally:
        await transport.close()


async def _drain_dead(
    settings: TransportSettings, count: int
) -> list[tuple[dict[str, str], bytes]]:
    """Take `count` messages off the dead channel: their headers and bodies."""
    transport = build_transport(settings)
    await transport.connect()
    taken: list[tuple[dict[str, str], bytes]] = []
    try:
        async with transport.subscribe(DEAD_CHANNEL, "operators", prefetch=10) as dead:
            with anyio.fail_after(30):
                while len(taken) < count:
                    delivery = await anext(dead)
                    taken.append((dict(delivery.message.headers), delivery.message.body))
                    await delivery.ack()
    finally:
        await transport.close()
    return taken


def _dead_letter_logs(log: str, what: str) -> int:
    """How many JSON log lines say a message was dead-lettered, each with its reason."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    hits = [line for line in lines if line["message"] == f"dead-lettering an {what}"]
    assert all(line.get("reason") for line in hits), hits
    return len(hits)
