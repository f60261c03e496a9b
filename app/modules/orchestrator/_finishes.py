"""Run ends decided in this process, for whoever waits on them (the API's long poll)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio


class RunFinishes:
    """Wakes the waiters of a run when a decision in this process ends it.

    In memory, and only for decisions taken here: a waiter also re-reads the store now
    and then, which is how it learns of an end decided by another process.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, set[anyio.Event]] = {}

    @contextmanager
    def watching(self, run_id: str) -> Iterator[anyio.Event]:
        """An event set when the run ends here; watch before reading the run, so an end
        decided between the read and the wait is not missed."""
        ended = anyio.Event()
        self._waiting.setdefault(run_id, set()).add(ended)
        try:
            yield ended
        finally:
            waiters = self._waiting.get(run_id)
            if waiters is not None:
                waiters.discard(ended)
                if not waiters:
                    del self._waiting[run_id]

    def ended(self, run_id: str) -> None:
        """The run reached a terminal status (committed)."""
        for ended in self._waiting.pop(run_id, ()):
            ended.set()
