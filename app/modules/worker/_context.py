"""`TaskContext`: what a handler knows about the attempt it runs, its heartbeat, its cancel.

`ctx.heartbeat(details)` never blocks on the broker: it records the details and the
attempt's sender publishes them, paced like Temporal's SDKs: the first at once, then at
most one per `heartbeat_interval` (0.8 x the task's `heartbeat_timeout`, or
`DEFAULT_HEARTBEAT_INTERVAL` without one), always with the latest details. It works from
the event loop and from the worker thread a sync handler runs in, awaited or not.

`ctx.cancelled` turns True when the orchestrator no longer waits for the attempt (its run
ended, or it timed out). An async handler is also cancelled at its next await; a sync
handler's thread cannot be interrupted, so it should check `ctx.cancelled` now and then
(the worker has already let the attempt go: its slot is free and its result is dropped).
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
import msgspec

from treadle.domain.state import MAX_HEARTBEAT_DETAILS_BYTES
from treadle.observability import get_logger

log = get_logger(__name__)

HeartbeatSink = Callable[[Any], Awaitable[None]]
"""Publishes one heartbeat with the handler's details."""

DEFAULT_HEARTBEAT_INTERVAL = 5.0
"""Seconds between two heartbeats sent for a task without a `heartbeat_timeout`."""
HEARTBEAT_PACE = 0.8
"""With a `heartbeat_timeout`, heartbeats go out at most every this share of it."""


class HeartbeatTooLarge(ValueError):
    """Heartbeat details larger than the orchestrator keeps (`MAX_HEARTBEAT_DETAILS_BYTES`)."""

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__(
            f"heartbeat details take {size} bytes as JSON, more than the "
            f"{MAX_HEARTBEAT_DETAILS_BYTES} kept"
        )


def heartbeat_interval(heartbeat_timeout: float | None) -> float:
    """How often an attempt's heartbeats are sent at most."""
    if heartbeat_timeout is None:
        return DEFAULT_HEARTBEAT_INTERVAL
    return heartbeat_timeout * HEARTBEAT_PACE


class _Box(msgspec.Struct, frozen=True):
    """Details waiting to be sent (boxed: None is valid details)."""

    value: Any


class AttemptControl:
    """The worker's side of one running attempt: its cancel flag and its heartbeat sender."""

    def __init__(self, sink: HeartbeatSink | None, interval: float = DEFAULT_HEARTBEAT_INTERVAL):
        self.cancelled = False
        self._sink = sink
        self._interval = interval
        self._pending: _Box | None = None
        self._last_sent: float | None = None
        self._wake = anyio.Event() if sink is not None else None
        self._token = _loop_token() if sink is not None else None
        self._loop_thread = threading.get_ident()

    def beat(self, details: Any) -> bool:
        """Queue a heartbeat (from the loop or a worker thread); False without a sink."""
        value = _json_details(details)
        if self._sink is None:
            return False
        if threading.get_ident() == self._loop_thread:
            self._offer(value)
        else:
            try:
                anyio.from_thread.run_sync(self._offer, value, token=self._token)
            except RuntimeError:  # the event loop is gone: the attempt is over anyway
                return False
        return True

    def _offer(self, value: Any) -> None:
        self._pending = _Box(value)
        if self._wake is not None:
            self._wake.set()

    async def send_heartbeats(self) -> None:
        """Publish queued heartbeats, paced (see the module docstring), until cancelled."""
        if self._sink is None:
            return
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            if self._last_sent is not None:
                # max(): a beat after a quiet spell longer than the interval goes at once
                await anyio.sleep(max(0.0, self._last_sent + self._interval - anyio.current_time()))
            box, self._pending = self._pending, None
            if box is None:
                continue
            self._last_sent = anyio.current_time()
            try:
                await self._sink(box.value)
            except Exception:
                log.warning("publishing a heartbeat failed", exc_info=True)


def _loop_token() -> anyio.lowlevel.EventLoopToken | None:
    """The running loop, so any thread can reach it; None outside one (a worker thread
    started by anyio still finds its loop by itself)."""
    try:
        return anyio.lowlevel.current_token()
    except anyio.NoEventLoopError:
        return None


def _json_details(details: Any) -> Any:
    """The details as plain JSON data, within the size the orchestrator keeps."""
    encoded = msgspec.json.encode(details)  # TypeError names what cannot be encoded
    if len(encoded) > MAX_HEARTBEAT_DETAILS_BYTES:
        raise HeartbeatTooLarge(len(encoded))
    return msgspec.json.decode(encoded)


class HeartbeatCall:
    """What `ctx.heartbeat()` returns: awaiting it is optional (it yields once)."""

    __slots__ = ("accepted",)

    def __init__(self, accepted: bool) -> None:
        self.accepted = accepted

    def __bool__(self) -> bool:
        return self.accepted

    def __await__(self) -> Generator[Any, None, bool]:
        yield from anyio.lowlevel.checkpoint().__await__()
        return self.accepted


@dataclass(frozen=True)
class TaskContext:
    """The attempt a handler runs: its identity, progress reports, and whether to stop.

    `idempotency_key` is the same for every attempt of a task, so a handler can pass it to
    the systems it calls and make its side effect happen once despite retries.
    """

    run_id: str
    task_id: str
    attempt: int
    workflow: str = ""
    version: int = 0
    idempotency_key: str = ""
    _control: AttemptControl = field(
        default_factory=lambda: AttemptControl(None), repr=False, compare=False
    )

    @classmethod
    def for_attempt(
        cls,
        *,
        run_id: str,
        task_id: str,
        attempt: int,
        workflow: str,
        version: int,
        idempotency_key: str,
        heartbeat: HeartbeatSink | None = None,
        control: AttemptControl | None = None,
    ) -> TaskContext:
        """A context whose heartbeats go to `heartbeat` (None: heartbeats are no-ops), or
        through `control`, which also carries the attempt's cancellation."""
        return cls(
            run_id=run_id,
            task_id=task_id,
            attempt=attempt,
            workflow=workflow,
            version=version,
            idempotency_key=idempotency_key,
            _control=control or AttemptControl(heartbeat),
        )

    @property
    def cancelled(self) -> bool:
        """True once the orchestrator no longer waits for this attempt: stop working."""
        return self._control.cancelled

    def heartbeat(self, details: Any = None) -> HeartbeatCall:
        """Tell the orchestrator the attempt is alive, with JSON `details` (say, progress).

        Does not wait for the broker; sends are paced, keeping the latest details. Call it
        from async or sync handlers, with or without `await`; the result is True when the
        beat was taken (False for a context built by hand). Raises `HeartbeatTooLarge`, or
        TypeError for details that are not JSON.
        """
        return HeartbeatCall(self._control.beat(details))

    def heartbeat_sync(self, details: Any = None) -> bool:
        """`heartbeat` by another name, kept for sync handlers written against it."""
        return self._control.beat(details)
