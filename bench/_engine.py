"""The interface every engine under test implements, and helpers they share.

An engine is built for one configuration and one worker-pool size, set up fresh for each
measurement (its own database, queues and processes) and torn down after. Each workload
method returns raw `Timings`: for every run the client's clock just before the start call
and the time of the engine's own durable completion record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

SUBMIT_PARALLELISM = 64
"""How many start calls are in flight at once when a workload starts runs 'as fast as the
API accepts them'."""


@dataclass
class Timings:
    """Per-run start (client clock, epoch seconds) and durable finish times of one workload."""

    starts: list[float]
    finishes: list[float]
    units_per_run: int
    failed: int = 0
    submit_s: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


class Unavailable(RuntimeError):
    """The engine or configuration cannot run on this machine; the reason goes in the results."""


class Engine(Protocol):
    """One engine in one configuration."""

    name: str

    async def setup(self) -> None: ...
    async def run_chain10(self, n: int) -> Timings: ...
    async def run_fanout100(self, n: int) -> Timings: ...
    async def run_latency(self, n: int) -> Timings: ...
    async def run_backlog(self, n: int) -> Timings: ...
    def processes(self) -> dict[str, int]: ...
    async def teardown(self) -> None: ...


def parse_time(value: str | datetime) -> float:
    """Epoch seconds from an ISO-8601 timestamp (a trailing Z is UTC) or an aware datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return moment.timestamp()


async def submit_all(
    n: int, start: Callable[[int], Awaitable[T]], parallel: int = SUBMIT_PARALLELISM
) -> tuple[list[float], list[T], float]:
    """Call `start(i)` for i in range(n) with `parallel` calls in flight.

    Returns each call's client start time (just before the call), its result, and the time
    the whole submission took.
    """
    starts = [0.0] * n
    results: list[Any] = [None] * n
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def lane() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            starts[i] = time.time()
            results[i] = await start(i)

    begin = time.monotonic()
    await asyncio.gather(*(lane() for _ in range(min(parallel, n))))
    return starts, results, time.monotonic() - begin


async def wait_until(
    done: Callable[[], Awaitable[bool]], limit_s: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll `done` until it is true; TimeoutError after `limit_s` seconds."""
    deadline = time.monotonic() + limit_s
    while not await done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done after {limit_s:.0f}s: {what}")
        await asyncio.sleep(interval)


def drain_timeout(n: int, per_run: float = 0.05, floor: float = 120.0) -> float:
    """A generous bound on how long `n` runs may take to finish."""
    return max(floor, n * per_run)
