"""The identities of an attempt and of a durable timer, each spelled out once.

Events, commands and store records carry these fields flat (that is their wire and row
shape, which stays as it is); the mixins give each of them its key, so code that files
attempts or timers by identity asks for `attempt_key` / `timer_key` instead of building
its own tuple.
"""

from __future__ import annotations

from typing import NamedTuple


class AttemptKey(NamedTuple):
    """Names one attempt: of a task, or of one item of a `map` task (`item`)."""

    run_id: str
    task_id: str
    attempt: int
    item: int | None = None


class TimerKey(NamedTuple):
    """Names one timer row: a later start of it replaces it, a cancel deletes it."""

    run_id: str
    kind: str
    task_id: str | None
    attempt: int
    item: int | None


class AttemptFields:
    """For a Struct that names an attempt by `run_id`, `task_id`, `attempt` and `item`."""

    # No slots and no fields of its own: the Struct declares the fields (in its wire
    # order), this only reads them.
    __slots__ = ()
    run_id: str
    task_id: str
    attempt: int
    item: int | None

    @property
    def attempt_key(self) -> AttemptKey:
        """The attempt this names."""
        return AttemptKey(self.run_id, self.task_id, self.attempt, self.item)


class TimerFields:
    """For a Struct that names a timer by `run_id`, `kind`, `task_id`, `attempt`, `item`."""

    __slots__ = ()
    run_id: str
    kind: str
    task_id: str | None
    attempt: int
    item: int | None

    @property
    def timer_key(self) -> TimerKey:
        """The timer row this names."""
        return TimerKey(self.run_id, str(self.kind), self.task_id, self.attempt, self.item)
