"""Run states this process committed, kept to skip reading them back at the next decision.

Each entry is the state a decision committed and the run's `revision` after it. A
decision increments the revision as it locks the run; when the new value is one more
than the kept one, nobody else decided on the run in between, so the kept state is
exactly what the run and task rows hold.
"""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from treadle.domain.state import RunState

KEPT_RUNS = 4096


class KeptStates:
    """A bounded map of run id to (revision, state), least recently used out first."""

    def __init__(self, size: int = KEPT_RUNS) -> None:
        self._size = size
        self._items: OrderedDict[str, tuple[int, RunState]] = OrderedDict()

    def at(self, run_id: str, revision: int) -> RunState | None:
        """The state kept for `run_id` if it is the one at `revision`."""
        kept = self._items.get(run_id)
        if kept is None or kept[0] != revision:
            return None
        self._items.move_to_end(run_id)
        return kept[1]

    def keep(self, revision: int, state: RunState) -> None:
        """Remember `state` as the run's at `revision` (map items are never kept)."""
        if state.map_items:
            state = msgspec.structs.replace(state, map_items=[])
        self._items[state.id] = (revision, state)
        self._items.move_to_end(state.id)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def forget(self, run_id: str) -> None:
        """Drop what is kept for `run_id` (a transaction on it ended without a commit)."""
        self._items.pop(run_id, None)
