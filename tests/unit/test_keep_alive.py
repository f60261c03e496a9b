"""The API server keeps idle connections longer than clients do, so clients close first."""

from __future__ import annotations

import httpx

from treadle.serving.serve import KEEP_ALIVE_SECONDS


def test_the_server_keeps_idle_connections_longer_than_httpx_does() -> None:
    """With equal expiries (uvicorn's and httpx's default are both 5 s) a client can send
    a request on a connection the server is closing, and gets a ReadError."""
    client_expiry = httpx.Limits().keepalive_expiry
    assert client_expiry is not None
    assert client_expiry < KEEP_ALIVE_SECONDS
    assert KEEP_ALIVE_SECONDS > 60  # behind a load balancer's 60 s idle timeout too
