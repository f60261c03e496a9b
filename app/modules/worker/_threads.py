"""The threads sync handlers run in: bounded, counted, and kept until the handler returns.

A sync handler runs in a thread, and nothing can interrupt a thread: when its attempt
times out or is cancelled, the worker lets the attempt go (its slot of `concurrency` is
freed, its result dropped) while the thread runs on until the function returns. A
handler that hangs keeps its thread for ever; unbounded, each such attempt cost the
process one more thread (45 hung attempts grew one from 7 threads to 52).

`SyncThreads` bounds them at `worker.max_sync_threads`. The delivery loop takes a
`SyncSlot` before it starts an attempt of a sync handler; and while every slot is held
it takes no delivery at all (it cannot tell a sync handler's dispatch from another's
before taking it), so the backlog stays on the broker, for another worker or for later,
neither failed nor counted as redelivered. Async handlers and `http` tasks wait too.
The thread is awaited by a task of its own, owned by `SyncThreads` rather than by the
attempt, so the slot stays held after the attempt has let the thread go and is given
back only when the handler function really returns. The worker abandons those threads
only when it stops.

The threads come from a limiter of their own, not anyio's default one that every other
`anyio.to_thread` user in the process shares: hung handlers cannot starve those.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from treadle.domain.errors import TreadleError
from treadle.observability import Metrics, get_logger

log = get_logger(__name__)


class SyncThreadsExhausted(TreadleError):
    """Every thread sync handlers may hold is held: the worker takes no work."""

    def __init__(self, held: int, limit: int, abandoned: int) -> None:
        self.held = held
        self.limit = limit
        self.abandoned = abandoned
        super().__init__(
            f"worker.max_sync_threads reached: {held} of {limit} sync handler threads are "
            f"held ({abandoned} by attempts that timed out or were cancelled while their "
            "handler kept running); taking no work until a handler returns"
        )


class WorkerStopped(Exception):
    """The worker stopped, abandoning the thread, before the handler returned."""


class _Outcome:
    """What the thread's function returned or raised, once it has."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.value: Any = None
        self.error: Exception | None = None

    def result(self) -> Any:
        if not self.done.is_set():
            raise WorkerStopped("the worker stopped before the handler returned")
        if self.error is not None:
            raise self.error
        return self.value


class SyncSlot:
    """One thread's place under the bound: taken before its attempt starts, given back
    when the handler it ran returns (or at once, if it never ran one)."""

    __slots__ = ("_abandoned", "_ran", "_released", "_threads")

    def __init__(self, threads: SyncThreads) -> None:
        self._threads = threads
        self._ran = False
        self._released = False
        self._abandoned = False

    async def run_sync(self, fn: Callable[[], Any]) -> Any:
        """Call `fn` in a thread holding this slot until `fn` returns.

        Cancelling the caller stops only the waiting: the thread runs on, still holding
        the slot, and counts as abandoned until it returns.
        """
        if self._ran:
            raise RuntimeError("a sync slot runs one handler")
        self._ran = True
        return await self._threads.run_holding(self, fn)

    def release_unused(self) -> None:
        """Give the slot back if no handler ran in it (the attempt ended before that)."""
        if not self._ran:
            self._threads.release(self)


class SyncThreads:
    """The bound on the threads sync handlers hold at once (see the module docstring)."""

    def __init__(self, limit: int, metrics: Metrics | None = None) -> None:
        if limit < 1:
            raise ValueError(f"worker.max_sync_threads must be at least 1, not {limit}")
        self.limit = limit
        self._metrics = metrics or Metrics()
        self._slots = anyio.CapacityLimiter(limit)
        # The bound is `_slots`; this one only keeps the threads off anyio's default limiter.
        self._threads = anyio.CapacityLimiter(math.inf)
        self._abandoned = 0
        self._freed = anyio.Event()  # set (and replaced) each time a slot is given back
        self._holders: anyio.abc.TaskGroup | None = None
        self._serving: anyio.CancelScope | None = None

    @property
    def held(self) -> int:
        """Threads held now, by running attempts and by abandoned ones."""
        return int(self._slots.borrowed_tokens)

    @property
    def abandoned(self) -> int:
        """Threads still running a handler whose attempt the worker already let go."""
        return self._abandoned

    @property
    def exhausted(self) -> bool:
        """Whether every slot is held (the worker takes no deliveries meanwhile)."""
        return self.held >= self.limit

    def check(self) -> None:
        """Raise `SyncThreadsExhausted` while every slot is held."""
        if self.exhausted:
            raise SyncThreadsExhausted(self.held, self.limit, self._abandoned)

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the tasks awaiting threads until `stop()`; the worker runs this first.

        Shielded: while the worker drains, its handlers may still return within the time
        it allows. `stop()` cancels it, abandoning the threads still running.
        """
        if self._holders is not None:
            raise RuntimeError("another worker is serving these sync threads")
        self._metrics.set_sync_threads_limit(self.limit)
        with anyio.CancelScope(shield=True) as self._serving:
            try:
                async with anyio.create_task_group() as holders:
                    self._holders = holders
                    task_status.started()
                    await anyio.sleep_forever()
            finally:
                self._holders = None

    def stop(self) -> None:
        """Stop `serve()`; threads still running are abandoned and their slots freed."""
        if self._serving is not None:
            self._serving.cancel()

    async def wait_for_room(self) -> None:
        """Return once a slot is free, without taking it (at once while one is)."""
        if not self.exhausted:
            return
        self._say_exhausted()
        while self.exhausted:
            await self._freed.wait()

    async def reserve(self) -> SyncSlot:
        """A slot for one handler; waits while every slot is held."""
        slot = SyncSlot(self)
        if self.exhausted:
            self._say_exhausted()
        await self._slots.acquire_on_behalf_of(slot)
        self._publish()
        return slot

    def _say_exhausted(self) -> None:
        log.warning(
            "every sync handler thread is held: taking no work until a handler returns",
            held=self.held,
            abandoned=self._abandoned,
            limit=self.limit,
        )

    def release(self, slot: SyncSlot) -> None:
        """Give `slot` back (once)."""
        if slot._released:
            return
        slot._released = True
        self._slots.release_on_behalf_of(slot)
        self._publish()
        freed, self._freed = self._freed, anyio.Event()
        freed.set()

    async def run_holding(self, slot: SyncSlot, fn: Callable[[], Any]) -> Any:
        """Run `fn` in a thread awaited by a task of ours, which releases `slot` once `fn`
        has returned; the caller only waits for that (see `SyncSlot.run_sync`)."""
        if self._holders is None:
            raise RuntimeError("SyncThreads.serve() is not running")
        outcome = _Outcome()
        self._holders.start_soon(self._hold, slot, fn, outcome)
        try:
            await outcome.done.wait()
        finally:
            if not outcome.done.is_set():
                # The attempt let the thread go (timed out, cancelled): it keeps the slot.
                slot._abandoned = True
                self._abandoned += 1
                self._publish()
        return outcome.result()

    async def _hold(self, slot: SyncSlot, fn: Callable[[], Any], outcome: _Outcome) -> None:
        try:
            if slot._abandoned:
                return  # the attempt let go before the thread started: no need to start it
            # Cancellable only by `stop()`: the attempt waits on `outcome`, not on this.
            outcome.value = await anyio.to_thread.run_sync(
                fn, abandon_on_cancel=True, limiter=self._threads
            )
        except Exception as exc:  # noqa: BLE001 -- the handler's own failure, for its attempt
            outcome.error = exc
        finally:
            outcome.done.set()
            if slot._abandoned:
                self._abandoned -= 1
            self.release(slot)

    def _publish(self) -> None:
        self._metrics.set_sync_threads(self.held, self._abandoned)
