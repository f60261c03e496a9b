"""Group commit: decisions on different runs, waiting at the same time, share one transaction.

Each caller queues its request and waits. While fewer than `leaders` groups are in
flight, a waiting caller becomes a leader: it takes the queued requests (one per run, at
most `max_size`) and commits them together through `commit`, then wakes their callers.
An idle store therefore commits a lone decision at once; a busy one commits many per
transaction, so the per-transaction round trips are shared instead of paid per step.

A caller cancelled while its request is in a group does not roll the group back: its
decision may commit without it. Its event was not acked, so it comes again and is decided
again (decisions are idempotent), and its outbox rows go out with the sweeper. A leader
cancelled mid-commit rolls its group back; the others get a retryable `StoreUnavailable`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import anyio

from treadle.store._errors import StoreUnavailable

T = TypeVar("T")


class GroupRequest(Generic[T]):
    """One decision waiting for its group: the run, the caller's payload, and its outcome."""

    __slots__ = ("done", "error", "payload", "result", "run_id", "taken", "wake")

    def __init__(self, run_id: str, payload: T) -> None:
        self.run_id = run_id
        self.payload = payload
        self.result: object = None
        self.error: BaseException | None = None
        self.taken = False
        self.done = False
        self.wake = anyio.Event()

    def succeed(self, result: object) -> None:
        self.result, self.done = result, True

    def fail(self, error: BaseException) -> None:
        self.error, self.done = error, True


Commit = Callable[[Sequence[GroupRequest[T]]], Awaitable[None]]


class GroupCommitter(Generic[T]):
    """Queues requests and commits them in groups through `commit`.

    `commit` settles every request it is given (`succeed` or `fail`); one it leaves
    unsettled fails with the error `commit` raised, or `StoreUnavailable`.
    """

    def __init__(self, commit: Commit[T], *, leaders: int, max_size: int) -> None:
        self._commit = commit
        self._max_leaders = leaders
        self._max_size = max_size
        self._leaders = 0
        self._queue: list[GroupRequest[T]] = []

    async def submit(self, run_id: str, payload: T) -> object:
        """Wait until the request is committed (in some group); its result, or raise."""
        request = GroupRequest(run_id, payload)
        self._queue.append(request)
        try:
            while not request.done:
                if not request.taken and self._leaders < self._max_leaders:
                    await self._lead()
                    continue
                await request.wake.wait()
                request.wake = anyio.Event()
        finally:
            if not request.taken:
                self._queue.remove(request)
        if request.error is not None:
            raise request.error
        return request.result

    async def _lead(self) -> None:
        self._leaders += 1
        group = self._take()
        try:
            await self._commit(group)
        except BaseException as exc:
            _fail_unsettled(group, _for_follower(exc))
            raise
        else:
            _fail_unsettled(group, StoreUnavailable("apply", "its group left it undecided"))
        finally:
            for request in group:
                request.wake.set()
            self._leaders -= 1
            if self._queue:  # a slot is free: the oldest waiting request leads next
                self._queue[0].wake.set()

    def _take(self) -> list[GroupRequest[T]]:
        """The oldest queued requests, one per run (a run's next decision waits for the
        group after: it must see this one's state)."""
        group: list[GroupRequest[T]] = []
        runs: set[str] = set()
        for request in self._queue:
            if len(group) == self._max_size:
                break
            if request.run_id not in runs:
                runs.add(request.run_id)
                group.append(request)
        for request in group:
            request.taken = True
            self._queue.remove(request)
        return group


async def together_or_alone(
    group: Sequence[GroupRequest[T]],
    together: Commit[T],
    alone: Callable[[GroupRequest[T]], Awaitable[object]],
) -> None:
    """Settle `group` through `together`; if that fails, each request through `alone`, so
    that one request's failure is its own and not the others'."""
    try:
        await together(group)
    except Exception:
        if len(group) == 1:
            raise
        for request in group:
            try:
                request.succeed(await alone(request))
            except Exception as exc:  # noqa: BLE001 - it is that request's own outcome
                request.fail(exc)


def _fail_unsettled(group: Sequence[GroupRequest[T]], error: BaseException) -> None:
    for request in group:
        if not request.done:
            request.fail(error)


def _for_follower(exc: BaseException) -> BaseException:
    """What the other callers of a failed group see: the error itself, or, when the leader
    was cancelled, a retryable `StoreUnavailable` (their decisions were rolled back)."""
    if isinstance(exc, Exception):
        return exc
    return StoreUnavailable("apply", "the transaction of its group was interrupted")
