"""NATS pull fetch: a bare asyncio timeout (nats-py's "nothing yet") is an empty batch."""

from __future__ import annotations

from typing import Any

import pytest

from treadle.config import TransportSettings
from treadle.transports.nats import NatsTransport, _Subscription

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """nats-py runs on asyncio only."""
    return "asyncio"


class _TimingOutPull:
    """A pull subscription whose fetch times out the way nats-py's `_fetch_n` does."""

    async def fetch(self, **_: Any) -> list[Any]:
        raise TimeoutError  # what nats-py raises (asyncio.TimeoutError is this alias)


async def test_a_bare_asyncio_timeout_on_fetch_is_no_messages_not_a_broken_broker() -> None:
    """The consumer keeps waiting instead of raising TransportUnavailable (and dying)."""
    transport = NatsTransport(TransportSettings(kind="nats", url="nats://127.0.0.1:1"))
    subscription = _Subscription(transport, _TimingOutPull(), "tasks.default", 4)  # type: ignore[arg-type]
    assert await subscription._fetch(4) == []
