"""The long poll behind `GET /v1/runs/{id}?wait=N`: answer when the run ends, or at N."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

import anyio

from treadle.domain.state import RunState
from treadle.ports import RunEnds

MAX_WAIT_SECONDS = 60.0
RECHECK_WITH_NOTICES = 1.0
"""With the orchestrator in this process, ends are announced; the store is read again
this often anyway (an end decided by another replica is not announced here)."""
RECHECK_WITHOUT = 0.1
"""Without it (an api-only process), the store is read this often."""


async def run_when_ended(
    read: Callable[[str], Awaitable[RunState]], ends: RunEnds | None, run_id: str, seconds: float
) -> RunState:
    """The run (as `read` reads it) once it has ended, or as it is after `seconds`; raises
    `RunNotFound`."""
    deadline = anyio.current_time() + seconds
    recheck = RECHECK_WITH_NOTICES if ends is not None else RECHECK_WITHOUT
    while True:
        with _watching(ends, run_id) as ended:
            run = await read(run_id)
            remaining = deadline - anyio.current_time()
            if run.status.is_terminal or remaining <= 0:
                return run
            with anyio.move_on_after(min(remaining, recheck)):
                await ended.wait()


@contextlib.contextmanager
def _watching(ends: RunEnds | None, run_id: str) -> Iterator[anyio.Event]:
    if ends is None:
        yield anyio.Event()  # never set: only the rechecks
        return
    with ends.watching(run_id) as ended:
        yield ended
