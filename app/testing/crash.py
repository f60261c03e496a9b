"""Test-only crash points: `TREADLE_CRASH_AT=name[:N],...` kills the process there.

The fault-injection suite uses them to stop a process at the worst moments (a handler
ran but its result is unpublished, a decision committed but its outbox unrelayed, ...)
exactly as `kill -9` would: `os._exit(137)`, no cleanup, no flushing.

The variable is read once, when this module is imported. Unset (always, outside the
fault suite), `crash_point` is bound to a function that returns at once, so a call on
the hot path costs one no-op call and nothing is looked up or counted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from treadle.domain.errors import TreadleError

ENV_VAR = "TREADLE_CRASH_AT"
EXIT_CODE = 137  # what a shell reports for a process killed by SIGKILL

POINTS = frozenset(
    {
        # worker
        "after_effect_before_publish",  # the handler ran; its result is not published
        "after_publish_before_ack",  # the result is published; the dispatch is not acked
        # orchestrator (and the api, which relays a new run's first decision)
        "after_commit_before_publish",  # a decision committed; its outbox is not relayed
        "after_publish_before_mark_sent",  # the outbox is published; not marked sent
        "after_decision_before_ack",  # an event was applied; its delivery is not acked
        # api
        "after_create_before_response",  # a run was created; the client has no answer
    }
)

CrashPoint = Callable[[str], None]


class UnknownCrashPoint(TreadleError):
    """`TREADLE_CRASH_AT` names a crash point that does not exist (a typo must not pass)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"{ENV_VAR}: unknown crash point {name!r}; one of {sorted(POINTS)}")


def parse(spec: str) -> dict[str, int]:
    """`name[:N],...` as {name: N}: crash on the Nth time the point is reached (N >= 1)."""
    plan: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, nth = part.partition(":")
        if name not in POINTS:
            raise UnknownCrashPoint(name)
        plan[name] = max(1, int(nth)) if nth else 1
    return plan


def _noop(name: str) -> None:
    """The crash point when none is configured: nothing to do."""


def crasher(plan: Mapping[str, int], exit: Callable[[int], object] = os._exit) -> CrashPoint:
    """A crash point that calls `exit(137)` on the Nth hit of each planned point."""
    if not plan:
        return _noop
    remaining = dict(plan)

    def crash_at(name: str) -> None:
        left = remaining.get(name)
        if left is None:
            return
        remaining[name] = left - 1
        if left == 1:
            exit(EXIT_CODE)

    return crash_at


crash_point: CrashPoint = crasher(parse(os.environ.get(ENV_VAR, "")))
"""Call `crash_point("<name>")` where the process may be killed; bound once, at import."""
