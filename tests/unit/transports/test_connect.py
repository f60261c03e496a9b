"""Start-up connect: an unreachable broker is retried with backoff, then named in one error."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import structlog

from treadle.messages import Message
from treadle.transports._connect import BrokerUnreachable, connect_with_retries
from treadle.transports._errors import TransportUnavailable

pytestmark = pytest.mark.anyio

URL = "amqp://guest:***@mq.example:5672/"


class FlakyTransport:
    """Refuses `failures` connects, then connects (the rest of the port is never used)."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries = 0
        self.connected = False

    async def connect(self) -> None:
        self.tries += 1
        if self.tries <= self.failures:
            raise TransportUnavailable(URL, "connection refused")
        self.connected = True

    async def close(self) -> None:
        self.connected = False

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        raise NotImplementedError

    def subscribe(self, *args: object, **kwargs: object) -> Callable[..., object]:
        raise NotImplementedError


async def test_a_broker_that_comes_up_late_is_connected_after_retries() -> None:
    """Connect retries refused attempts with backoff and succeeds once the broker answers."""
    transport = FlakyTransport(failures=3)
    with structlog.testing.capture_logs() as logs:
        await connect_with_retries(transport, retry_seconds=10, wait_initial=0.01, wait_max=0.02)
    assert transport.connected
    assert transport.tries == 4
    retries = [e for e in logs if e["event"].startswith("cannot connect to the broker")]
    assert [e["attempt"] for e in retries] == [1, 2, 3]
    assert {e["url"] for e in retries} == {URL}


async def test_a_broker_that_never_answers_stops_start_up_with_one_clear_error() -> None:
    """After the window closes, BrokerUnreachable names the URL, the tries and the reason."""
    transport = FlakyTransport(failures=10_000)
    with pytest.raises(BrokerUnreachable) as caught:
        await connect_with_retries(transport, retry_seconds=0.3, wait_initial=0.01, wait_max=0.05)
    error = caught.value
    assert error.url == URL
    assert error.tries == transport.tries > 1
    assert error.waited_seconds < 2
    assert error.reason == "connection refused"
    assert URL in str(error)
    assert "\n" not in str(error)
    assert not transport.connected


async def test_a_reachable_broker_connects_on_the_first_try_without_a_warning() -> None:
    """No retry, no log line when the broker is there."""
    transport = FlakyTransport(failures=0)
    with structlog.testing.capture_logs() as logs:
        await connect_with_retries(transport, retry_seconds=1)
    assert transport.tries == 1
    assert logs == []
