"""A TCP relay in front of a local broker port, whose live connections a test can cut.

Cutting closes both sides of every relayed connection at once, as a network fault or a
broker restart would; the listener stays up, so clients can reconnect straight away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
import anyio.abc

CUT_SETTLE_SECONDS = 0.1
"""Time for the closed sockets' EOFs to reach both ends before a cut returns."""


class TcpProxy:
    """Relays each accepted connection to `127.0.0.1:<upstream_port>`."""

    def __init__(self) -> None:
        self.port = 0
        self.cuts = 0
        """How many connections `drop_connections` has closed so far."""
        self._scopes: set[anyio.CancelScope] = set()

    async def drop_connections(self) -> None:
        """Close every live relayed connection, client side and broker side."""
        for scope in list(self._scopes):
            scope.cancel()
            self.cuts += 1
        await anyio.sleep(CUT_SETTLE_SECONDS)

    async def relay(self, client: anyio.abc.SocketStream, upstream_port: int) -> None:
        with anyio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", upstream_port)
            except OSError:
                # The broker is not up (yet): refuse this client, keep serving others.
                await client.aclose()
            else:
                async with client, upstream, anyio.create_task_group() as tg:
                    tg.start_soon(_pipe, client, upstream)
                    tg.start_soon(_pipe, upstream, client)
        self._scopes.discard(scope)


@asynccontextmanager
async def tcp_proxy(upstream_port: int) -> AsyncIterator[TcpProxy]:
    """Run a proxy to the local port on a free local port for the duration of the block."""
    proxy = TcpProxy()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tg:
        proxy.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, partial(proxy.relay, upstream_port=upstream_port))
        yield proxy
        tg.cancel_scope.cancel()


async def _pipe(source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass
    finally:
        await sink.aclose()
