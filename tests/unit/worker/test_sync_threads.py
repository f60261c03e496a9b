"""Sync handlers' threads: bounded by `worker.max_sync_threads`, held until the handler
returns (also after its attempt timed out), counted in metrics and shown on /readyz."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import msgspec
import pytest
import structlog

from tests.unit.worker.fakes import FakeClock
from treadle import TaskContext, handler
from treadle.config import DatabaseSettings, Settings, TransportSettings, WorkerSettings
from treadle.domain.events import DispatchTask, TaskCompleted, TaskFailed
from treadle.messages import EVENTS_CHANNEL, decode, envelope, tasks_channel, to_message
from treadle.modules.worker import HandlerRegistry, Worker
from treadle.serving.operations import operations_app, run_checks
from treadle.transports.memory import MemoryBroker, MemoryTransport
from treadle.wiring import SyncThreadsHealth, build

gates: dict[str, threading.Event] = {}
"""Each hung handler waits on its task's event; the test (or its teardown) sets it."""
started: list[tuple[str, str]] = []
"""(worker, task id) of each handler call, appended from the handler's thread."""
log_task_ids: list[object] = []
"""The `task_id` each handler's thread saw in its log context."""


def _hang(ctx: TaskContext, where: str) -> str:
    log_task_ids.append(structlog.contextvars.get_contextvars().get("task_id"))
    started.append((where, ctx.task_id))
    # The timeout only keeps a failing test from leaking a thread for ever.
    gates.setdefault(ctx.task_id, threading.Event()).wait(timeout=30)
    return ctx.task_id


@handler("hang")
def hang(ctx: TaskContext) -> str:
    return _hang(ctx, "a")


def hang_on_b(ctx: TaskContext) -> str:
    return _hang(ctx, "b")


@pytest.fixture(autouse=True)
def hung_handlers() -> Iterator[None]:
    """Fresh gates and records per test; every gate is opened at the end, so no thread
    outlives its test."""
    gates.clear()
    started.clear()
    log_task_ids.clear()
    yield
    for gate in list(gates.values()):
        gate.set()


def release(task_id: str) -> None:
    """Let the hung handler of `task_id` return."""
    gates.setdefault(task_id, threading.Event()).set()


def _dispatch(task_id: str, *, input: Any = None, timeout: float | None = None) -> DispatchTask:
    return DispatchTask(
        run_id="r1",
        task_id=task_id,
        attempt=1,
        task_type="handler",
        queue="default",
        handler="hang",
        input=input,
        timeout_seconds=timeout,
    )


class Harness:
    """Workers and a publisher on one in-memory broker, and the results they publish."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self.broker = MemoryBroker()
        self._tg = tg
        self.results: list[TaskCompleted | TaskFailed] = []
        self._transports: list[MemoryTransport] = []
        self._stops: dict[Worker, tuple[anyio.CancelScope, anyio.Event]] = {}

    async def transport(self) -> MemoryTransport:
        transport = MemoryTransport(TransportSettings(), broker=self.broker)
        await transport.connect()
        self._transports.append(transport)
        return transport

    async def start_worker(self, where: str = "a", **settings: Any) -> Worker:
        registry = HandlerRegistry()
        registry.add(hang if where == "a" else hang_on_b, "hang")
        worker = Worker(
            await self.transport(),
            registry,
            WorkerSettings(drain_seconds=0.2, **settings),
            FakeClock(),
            source=f"worker-{where}",
        )
        scope, stopped = anyio.CancelScope(), anyio.Event()

        async def run() -> None:
            try:
                with scope:
                    await worker.run()
            finally:
                stopped.set()

        self._tg.start_soon(run)
        self._stops[worker] = (scope, stopped)
        return worker

    async def stop(self, worker: Worker) -> None:
        """Stop `worker` as SIGTERM would, and wait until its `run()` has returned."""
        scope, stopped = self._stops[worker]
        scope.cancel()
        await stopped.wait()

    async def publish(self, *dispatches: DispatchTask) -> None:
        publisher = await self.transport()
        messages = [to_message(envelope(d, source="test")) for d in dispatches]
        await publisher.publish(tasks_channel("default"), messages)

    async def collect_results(self) -> None:
        events = await self.transport()
        async with events.subscribe(EVENTS_CHANNEL, "orchestrators", 100) as deliveries:
            async for delivery in deliveries:
                payload = decode(delivery.message.body).payload
                if isinstance(payload, TaskCompleted | TaskFailed):
                    self.results.append(payload)
                await delivery.ack()

    async def close(self) -> None:
        for transport in self._transports:
            await transport.close()


@asynccontextmanager
async def harness() -> AsyncIterator[Harness]:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            h = Harness(tg)
            tg.start_soon(h.collect_results)
            try:
                yield h
            finally:
                for gate in list(gates.values()):
                    gate.set()  # let hung threads return before their workers stop
                tg.cancel_scope.cancel()
        await h.close()


async def wait_for(condition: Callable[[], bool]) -> None:
    # Polling: what is watched changes in handler threads, which cannot set an anyio Event.
    while not condition():  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def readiness(worker: Worker) -> str:
    """What /readyz says about the worker's sync threads."""
    checks = await run_checks([SyncThreadsHealth(worker.sync_threads)], 1.0)
    return checks["sync_threads"]


def gauge(worker: Worker, name: str) -> float | None:
    return worker.telemetry.metrics.registry.get_sample_value(f"treadle_worker_sync_threads_{name}")


def started_ids() -> set[str]:
    return {task_id for _, task_id in started}


@pytest.mark.anyio
async def test_at_the_bound_sync_work_stays_on_the_broker_for_another_worker() -> None:
    """With max_sync_threads hung handlers, a worker takes no more dispatches: the next
    one is started by another worker; the threads are off anyio's default limiter."""
    async with harness() as h:
        a = await h.start_worker("a", max_sync_threads=2, concurrency=8)
        await h.publish(_dispatch("t1"), _dispatch("t2"))
        await wait_for(lambda: len(started) == 2)
        await h.publish(_dispatch("t3"))
        await h.start_worker("b", max_sync_threads=2)
        await wait_for(lambda: len(started) == 3)

        assert sorted(started) == [("a", "t1"), ("a", "t2"), ("b", "t3")]
        assert gauge(a, "held") == 2
        assert gauge(a, "limit") == 2
        assert gauge(a, "abandoned") == 0
        assert anyio.to_thread.current_default_thread_limiter().borrowed_tokens == 0
        assert sorted(map(str, log_task_ids)) == ["t1", "t2", "t3"]  # the attempt's log context
        for task_id in ("t1", "t2", "t3"):
            release(task_id)
        await wait_for(lambda: len(h.results) == 3)
        assert gauge(a, "held") == 0
    assert all(isinstance(result, TaskCompleted) for result in h.results)


@pytest.mark.anyio
async def test_readiness_fails_at_the_bound_and_recovers_when_a_handler_returns() -> None:
    """/readyz answers 503 naming worker.max_sync_threads while every thread is held;
    releasing the hung handler lets the waiting dispatch start and readiness recover."""
    async with harness() as h:
        a = await h.start_worker("a", max_sync_threads=1)
        assert await readiness(a) == "ok"
        await h.publish(_dispatch("t1"), _dispatch("t2"))
        await wait_for(lambda: len(started) == 1)
        await anyio.sleep(0.1)  # time the worker would take to start t2 without the bound

        assert started_ids() == {"t1"}
        reason = await readiness(a)
        assert reason.startswith("worker.max_sync_threads reached: 1 of 1 sync handler threads")
        status, body = await _readyz(a)
        assert status == 503
        assert body["checks"]["sync_threads"] == reason

        release("t1")
        await wait_for(lambda: started_ids() == {"t1", "t2"})
        assert gauge(a, "held") == 1  # t2's thread now
        release("t2")
        await wait_for(lambda: len(h.results) == 2)
        assert gauge(a, "held") == 0
        assert await readiness(a) == "ok"
        assert (await _readyz(a))[0] == 200


@pytest.mark.anyio
async def test_a_timed_out_hung_handler_keeps_its_thread_until_it_returns() -> None:
    """A sync attempt past its timeout is reported failed and let go, but its thread
    stays held (and counted abandoned) until the function returns."""
    async with harness() as h:
        a = await h.start_worker("a", max_sync_threads=1)
        await h.publish(_dispatch("t1", timeout=0.01))
        await wait_for(lambda: len(h.results) == 1)
        await wait_for(lambda: a.inflight == 0)
        (failed,) = h.results
        assert isinstance(failed, TaskFailed)
        assert failed.error.type == "TimeoutError"
        assert gauge(a, "held") == 1
        assert gauge(a, "abandoned") == 1
        assert "(1 by attempts that timed out or were cancelled" in await readiness(a)

        await h.publish(_dispatch("t2"))
        await anyio.sleep(0.1)  # time the worker would take to start t2 without the bound
        assert started_ids() == {"t1"}

        release("t1")
        await wait_for(lambda: started_ids() == {"t1", "t2"})
        assert gauge(a, "abandoned") == 0
        release("t2")
        await wait_for(lambda: len(h.results) == 2)
        assert gauge(a, "held") == 0
        assert await readiness(a) == "ok"


@pytest.mark.anyio
async def test_a_sync_attempt_that_never_calls_its_handler_gives_its_thread_back() -> None:
    """An input that does not fit fails before any thread runs: the slot it took is
    free again, so the next sync dispatch runs."""
    async with harness() as h:
        a = await h.start_worker("a", max_sync_threads=1)
        await h.publish(_dispatch("bad", input=[1, 2]), _dispatch("t2"))
        await wait_for(lambda: started_ids() == {"t2"})
        release("t2")
        await wait_for(lambda: len(h.results) == 2)
        bad = next(r for r in h.results if r.task_id == "bad")
        assert isinstance(bad, TaskFailed)
        assert bad.error.type == "HandlerInputMismatch"
        assert gauge(a, "held") == 0


@pytest.mark.anyio
async def test_a_worker_stops_although_a_sync_handler_hangs_and_its_dispatch_goes_back() -> None:
    """Stopping abandons a hung handler's thread after the drain: `run()` returns, and the
    unfinished dispatch, never acked, is delivered to another worker."""
    async with harness() as h:
        a = await h.start_worker("a", max_sync_threads=1)
        await h.publish(_dispatch("t1"))
        await wait_for(lambda: len(started) == 1)
        await h.stop(a)
        assert not gates["t1"].is_set()  # still hung
        assert gauge(a, "held") == 0  # this worker is gone; so are its slots

        await h.start_worker("b")
        await wait_for(lambda: len(started) == 2)
        assert started == [("a", "t1"), ("b", "t1")]
        release("t1")
        await wait_for(lambda: len(h.results) == 1)
    assert isinstance(h.results[0], TaskCompleted)


@pytest.mark.anyio
async def test_the_engine_shares_its_sync_threads_with_its_worker_and_readiness(
    tmp_path: Path,
) -> None:
    """A worker process's /readyz checks the sync threads its worker holds; others don't."""
    settings = Settings(
        database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}"),
        worker=WorkerSettings(max_sync_threads=5),
    )
    worker_engine = build(settings, roles={"worker"})
    api_engine = build(settings, roles={"api"})
    try:
        assert worker_engine.worker().sync_threads is worker_engine.sync_threads
        assert worker_engine.sync_threads.limit == 5
        assert "sync_threads" in {check.name for check in worker_engine.health_checks()}
        assert "sync_threads" not in {check.name for check in api_engine.health_checks()}
    finally:
        await worker_engine.close()
        await api_engine.close()


async def _readyz(worker: Worker) -> tuple[int, dict[str, Any]]:
    """GET /readyz on an operations app whose one check is the worker's sync threads."""
    app = operations_app(worker.telemetry.metrics, [SyncThreadsHealth(worker.sync_threads)])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": "/readyz", "method": "GET", "headers": []}
    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, msgspec.json.decode(body)
