"""Every delivery ends in a recorded outcome: execution errors are failures, not requeues."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

from tests.unit.worker.fakes import FakeClock, FakeDelivery, FakeTransport, delivery_of
from treadle.config import DatabaseSettings, HttpSettings, LimitsSettings, Settings, WorkerSettings
from treadle.domain.events import DispatchTask, TaskCompleted, TaskFailed
from treadle.domain.state import ErrorInfo
from treadle.messages import EVENTS_CHANNEL, Message, decode
from treadle.modules.worker import HandlerRegistry, HttpExecutor, Worker
from treadle.wiring import build

pytestmark = pytest.mark.anyio


async def loopback(host: str, port: int) -> list[str]:
    """A stub resolver: every name is 127.0.0.1 (no real DNS, nothing public)."""
    return ["127.0.0.1"]


def _http_dispatch(request: dict[str, Any], attempt: int = 1) -> DispatchTask:
    return DispatchTask(
        run_id="r1",
        task_id="call",
        attempt=attempt,
        task_type="http",
        queue="default",
        input=request,
    )


@asynccontextmanager
async def worker_with(
    transport: FakeTransport,
    *,
    http: HttpExecutor | None = None,
    registry: HandlerRegistry | None = None,
    max_deliveries: int | None = None,
    **settings: Any,
) -> AsyncIterator[None]:
    """A worker running in the background until the block ends."""
    http = http or HttpExecutor(HttpSettings(allow=["127.0.0.1/32"]), resolver=loopback)
    extra = {} if max_deliveries is None else {"max_deliveries": max_deliveries}
    worker = Worker(
        transport,
        registry or HandlerRegistry(),
        WorkerSettings(**settings),
        FakeClock(),
        source="worker-1",
        http=http,
        **extra,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()
    await transport.close()


async def _outcome(delivery: FakeDelivery, transport: FakeTransport, **kw: Any) -> Any:
    with anyio.fail_after(10):
        async with worker_with(transport, **kw):
            await transport.feed("tasks.default").send(delivery)
            await delivery.settled_event.wait()
    return transport.payloads(EVENTS_CHANNEL)


@pytest.mark.parametrize(
    ("request_", "says"),
    [
        ({"url": "http://xn--localhost-/z"}, "not a valid URL"),
        ({"url": "http://host:99999/x"}, "port 99999"),
        ({"url": "http://host/x", "headers": {"X-Name": "café"}}, "X-Name"),
        ({"url": "http://host/x", "headers": {"X-Name": "中"}}, "X-Name"),
        ({"url": "http://host/x", "headers": {"X-Name": "\u2028"}}, "X-Name"),
    ],
    ids=["idna", "port", "latin1-header", "cjk-header", "line-separator-header"],
)
async def test_an_http_request_that_cannot_be_built_fails_the_attempt(
    request_: dict[str, Any], says: str
) -> None:
    """A request httpx cannot build is a non-retryable HttpRequestInvalid, published and
    acked, never an exception that requeues the delivery."""
    transport = FakeTransport()
    delivery = delivery_of(_http_dispatch(request_))
    [failed] = await _outcome(delivery, transport)
    assert delivery.settled == "ack"
    assert isinstance(failed, TaskFailed)
    assert (failed.error.type, failed.error.retryable) == ("HttpRequestInvalid", False)
    assert says in failed.error.message


class BrokenExecutor(HttpExecutor):
    """An executor with a bug: it raises instead of returning an outcome."""

    async def run(self, request: Any) -> dict[str, Any] | ErrorInfo:
        raise RuntimeError("a bug in the executor")


async def test_an_unexpected_exception_is_a_worker_error_naming_its_class() -> None:
    """An exception nothing maps is a retryable WorkerError whose message names its class
    (and which carries its traceback); the delivery is acked."""
    transport = FakeTransport()
    delivery = delivery_of(_http_dispatch({"url": "http://host/x"}))
    executor = BrokenExecutor(HttpSettings(), resolver=loopback)
    [failed] = await _outcome(delivery, transport, http=executor)
    assert delivery.settled == "ack"
    assert isinstance(failed, TaskFailed)
    assert failed.error.type == "WorkerError"
    assert failed.error.retryable
    assert failed.error.message == "RuntimeError: a bug in the executor"
    assert failed.error.traceback is not None
    assert "BrokenExecutor" not in failed.error.message
    assert "raise RuntimeError" in failed.error.traceback


class SmallMessageTransport(FakeTransport):
    """A broker that refuses any message over 600 bytes (as NATS does over max_payload)."""

    async def publish(self, channel: str, messages: Sequence[Message]) -> None:
        if any(len(m.body) > 600 for m in messages):
            raise ConnectionError("message too large for the broker")
        await super().publish(channel, messages)


async def bulky(ctx: object) -> str:
    """A handler whose output is 2,002 bytes as JSON."""
    return "x" * 2000


def _bulky_registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    registry.add(bulky, "bulky")
    return registry


def _bulky_dispatch() -> DispatchTask:
    return DispatchTask(
        run_id="r1", task_id="t", attempt=1, task_type="handler", queue="default", handler="bulky"
    )


# The transport's last delivery (5) is run: the lost-attempt bound lies beyond it.
_FIVE_RUN: dict[str, Any] = {"max_deliveries": 5, "lost_after_deliveries": 6}


async def test_a_result_the_broker_refuses_is_requeued_before_the_last_delivery() -> None:
    """Before its last delivery, a result that cannot be published gives the dispatch back."""
    transport = SmallMessageTransport()
    delivery = FakeDelivery(delivery_of(_bulky_dispatch()).message, delivery_count=4)
    published = await _outcome(delivery, transport, registry=_bulky_registry(), **_FIVE_RUN)
    assert delivery.settled == "requeue"
    assert published == []


async def test_on_the_last_delivery_an_unpublishable_result_becomes_a_failure() -> None:
    """On its last delivery, a result that cannot be published is replaced by a small
    ResultNotPublished failure, so the attempt ends recorded instead of dead-lettered."""
    transport = SmallMessageTransport()
    delivery = FakeDelivery(delivery_of(_bulky_dispatch()).message, delivery_count=5)
    [failed] = await _outcome(delivery, transport, registry=_bulky_registry(), **_FIVE_RUN)
    assert delivery.settled == "ack"
    assert isinstance(failed, TaskFailed)
    assert not isinstance(failed, TaskCompleted)
    assert failed.error.type == "ResultNotPublished"
    assert "5 deliveries" in failed.error.message
    assert "message too large" in failed.error.message
    assert failed.started_at is not None  # it still carries the attempt's start


async def test_the_engine_gives_its_worker_limits_max_output_bytes(tmp_path: Path) -> None:
    """`limits.max_output_bytes` from the settings bounds what the engine's worker returns."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}"),
        limits=LimitsSettings(max_output_bytes=1500),
    )
    engine = build(settings, roles={"worker"})
    engine.registry.add(bulky, "bulky")
    await engine.transport.connect()
    try:
        delivery = FakeDelivery(delivery_of(_bulky_dispatch()).message)
        await engine.worker().process(delivery)
        async with engine.transport.subscribe(EVENTS_CHANNEL, "test", prefetch=1) as events:
            with anyio.fail_after(5):
                failed = decode((await anext(events)).message.body).payload
    finally:
        await engine.close()
    assert delivery.settled == "ack"
    assert isinstance(failed, TaskFailed)
    assert failed.error.type == "OutputTooLarge"
    assert "max_output_bytes (1500)" in failed.error.message


SECRET = "hunter2-Zq9"


async def leaky(ctx: object) -> None:
    """A handler whose failure quotes a secret value it was given."""
    raise PermissionError(f"login refused for password {SECRET}")


async def test_secret_values_are_redacted_from_handler_failures_and_their_log_line() -> None:
    """A TREADLE_SECRET_* value in a handler's exception is redacted from the published
    message and traceback, and from the worker's log line of the failure."""
    transport = FakeTransport()
    registry = HandlerRegistry()
    registry.add(leaky, "leaky")
    http = HttpExecutor(HttpSettings(), environ={"TREADLE_SECRET_DB": SECRET, "OTHER": "x"})
    dispatch = DispatchTask(
        run_id="r1", task_id="t", attempt=1, task_type="handler", queue="default", handler="leaky"
    )
    delivery = delivery_of(dispatch)
    with structlog.testing.capture_logs() as logs:
        [failed] = await _outcome(delivery, transport, registry=registry, http=http)
    assert isinstance(failed, TaskFailed)
    assert failed.error.message == "login refused for password [redacted]"
    assert failed.error.traceback is not None
    assert "PermissionError: login refused for password [redacted]" in failed.error.traceback
    assert SECRET not in transport.published[EVENTS_CHANNEL][0].body.decode()
    [line] = [entry for entry in logs if entry["event"] == "attempt failed"]
    assert line["error"] == "login refused for password [redacted]"
    assert SECRET not in str(logs)


async def _pause_then(ctx: Any, fail: bool) -> dict[str, bool]:
    await anyio.sleep(0.05)
    if fail:
        raise ValueError("no")
    return {"ok": True}


@pytest.mark.parametrize(
    ("fail", "message"), [(False, "attempt completed"), (True, "attempt failed")]
)
async def test_the_attempt_line_names_its_handler_and_duration(fail: bool, message: str) -> None:
    """The worker's line for an ended attempt says which handler ran and for how long."""
    transport = FakeTransport()
    registry = HandlerRegistry()
    registry.add(_pause_then, "orders.pause")
    dispatch = DispatchTask(
        run_id="r1",
        task_id="t",
        attempt=1,
        task_type="handler",
        queue="default",
        handler="orders.pause",
        input={"fail": fail},
    )
    with structlog.testing.capture_logs() as logs:
        await _outcome(delivery_of(dispatch), transport, registry=registry)
    [line] = [entry for entry in logs if entry["event"] == message]
    assert line["handler"] == "orders.pause"
    assert line["task_type"] == "handler"
    assert 50 <= line["duration_ms"] < 5_000
