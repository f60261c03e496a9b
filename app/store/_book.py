"""What one decision transaction records, the same in every store adapter."""

from __future__ import annotations

from collections.abc import Mapping

from treadle.domain.errors import RunNotFound
from treadle.domain.state import RunState
from treadle.ports import Applied, Changes
from treadle.store._decisions import RunNotLocked


class DecisionBook:
    """The bookkeeping of a `DecisionBatch`: the locked runs' states, what was last read
    of each (a write is the difference to it), the decisions and new runs recorded, and,
    after the commit, what each left. An adapter adds reading map items and committing."""

    def __init__(self, locked: Mapping[str, RunState]) -> None:
        self._locked = dict(locked)
        self._read: dict[str, RunState] = dict(locked)
        self._decided: dict[str, Changes] = {}
        self._creates: dict[str, tuple[RunState, Changes | None]] = {}
        self._applied: dict[str, Applied] = {}
        self._inserted: set[str] = set()

    @property
    def creating(self) -> list[str]:
        """The ids of the runs this transaction creates."""
        return list(self._creates)

    def state(self, run_id: str) -> RunState:
        """The locked run as stored, without map items; raises `RunNotFound`."""
        if run_id not in self._locked:
            raise RunNotFound(run_id)
        self._read[run_id] = self._locked[run_id]
        return self._locked[run_id]

    def _read_items(self, state: RunState) -> RunState:
        """Note `state`, the run with map items loaded, as what was last read of it."""
        self._read[state.id] = state
        return state

    def write(self, changes: Changes) -> None:
        """Record a decision on a locked run, against the state last read of it."""
        run_id = changes.state.id
        if run_id not in self._read:
            raise RunNotLocked(run_id)
        if run_id in self._decided:
            raise ValueError(f"run {run_id!r} was written twice in one decision transaction")
        self._decided[run_id] = changes

    def create(self, state: RunState, changes: Changes | None) -> None:
        """Record a new run, already in its decided state, and its first decision's effects."""
        if state.id in self._creates or state.id in self._locked:
            raise ValueError(f"run {state.id!r} is created twice in one decision transaction")
        self._creates[state.id] = (changes.state if changes else state, changes)

    def applied(self, run_id: str) -> Applied:
        """After the commit: what the write or create on `run_id` left."""
        return self._applied[run_id]

    def created(self, run_id: str) -> bool:
        """After the commit: whether the create of `run_id` inserted it."""
        return run_id in self._inserted
