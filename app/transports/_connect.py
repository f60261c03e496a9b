"""Connecting to the broker at start-up: retried with backoff for a bounded time.

A broker that is still starting (compose, Kubernetes) is normal, so a process waits for
it instead of crashing; a broker that never comes is a mistake, so after
`transport.connect_timeout_seconds` the process stops with one line naming the URL.
"""

from __future__ import annotations

import time

import stamina

from treadle.domain.errors import TreadleError
from treadle.observability import get_logger
from treadle.ports import Transport
from treadle.transports._errors import TransportUnavailable

log = get_logger(__name__)


class BrokerUnreachable(TreadleError):
    """The broker did not accept a connection within the start-up window."""

    def __init__(self, url: str, waited_seconds: float, tries: int, reason: str) -> None:
        self.url = url
        self.waited_seconds = waited_seconds
        self.tries = tries
        self.reason = reason
        super().__init__(
            f"cannot reach the broker at {url} after {tries} tries in {waited_seconds:.1f}s"
            f" ({reason}); check transport.url / TREADLE_BROKER_URL"
        )


async def connect_with_retries(
    transport: Transport,
    *,
    retry_seconds: float,
    wait_initial: float = 0.5,
    wait_max: float = 5.0,
) -> None:
    """Connect `transport`, retrying `TransportUnavailable` with backoff for `retry_seconds`.

    Each failed try is logged with the (password-redacted) URL the adapter reports; when
    the window closes the last failure becomes `BrokerUnreachable`.
    """
    started = time.monotonic()
    tries = 0
    try:
        async for attempt in stamina.retry_context(
            on=TransportUnavailable,
            attempts=None,
            timeout=retry_seconds,
            wait_initial=wait_initial,
            wait_max=wait_max,
        ):
            with attempt:
                tries += 1
                await _try_connect(transport, tries)
    except TransportUnavailable as exc:
        waited = time.monotonic() - started
        raise BrokerUnreachable(exc.url, waited, tries, exc.reason or "unavailable") from exc


async def _try_connect(transport: Transport, tries: int) -> None:
    try:
        await transport.connect()
    except TransportUnavailable as exc:
        log.warning(
            "cannot connect to the broker; retrying with backoff",
            url=exc.url,
            attempt=tries,
            reason=exc.reason,
        )
        raise
