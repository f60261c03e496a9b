"""An httpx transport that connects only to addresses the SSRF guard vetted.

The request keeps its host name (so the Host header, TLS SNI, certificate checks and the
connection pool all work by name as usual); only the TCP connect is redirected, by a
network backend, to the address the guard pinned for that (host, port). A host with no
pin is never connected to, so a DNS answer cannot change between check and connect.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpcore
import httpx

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class Pins:
    """The vetted address of each (host, port) this worker talks to."""

    def __init__(self) -> None:
        self._addresses: dict[tuple[str, int], str] = {}

    def pin(self, host: str, port: int, address: str) -> None:
        """Record the address `host:port` must connect to (the latest vetted one)."""
        self._addresses[(host.lower(), port)] = address

    def get(self, host: str, port: int) -> str | None:
        """The pinned address, or None if the guard never vetted this host."""
        return self._addresses.get((host.lower(), port))


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects to the pinned address instead of resolving the host name again."""

    def __init__(self, pins: Pins) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = self._pins.get(host, port)
        if address is None:
            raise httpcore.ConnectError(f"{host}:{port} was not vetted by the SSRF guard")
        return await self._inner.connect_tcp(
            address, port, timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 -- httpcore's backend interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("http tasks do not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def pinned_transport(pins: Pins, limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """An AsyncHTTPTransport whose pool connects through the pins (no proxies, no env)."""
    transport = httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    # httpx takes no network backend, so its pool is replaced by an equivalent one that
    # has ours; the integration tests fail loudly if a new httpx renames `_pool`.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=_PinnedBackend(pins),
    )
    return transport
