"""The limits the domain enforces, set from the `[limits]` settings section."""

from __future__ import annotations

import msgspec

from treadle.domain._bounded import DEFAULT_MAX_BYTES
from treadle.domain._cost import DEFAULT_MAX_COST, DEFAULT_MAX_DECISION_COST


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What a compiled workflow carries so the pure decider can apply configured caps."""

    max_tasks: int = 1000
    """Tasks in one definition (`limits.max_tasks`)."""
    max_expression_bytes: int = DEFAULT_MAX_BYTES
    """The largest value, as JSON, one expression may build (`limits.max_expression_bytes`)."""
    max_map_items: int = 100_000
    """The longest list a map task fans out over (`limits.max_map_items`)."""
    max_expression_cost: int = DEFAULT_MAX_COST
    """The cost units one evaluation may spend (`limits.max_expression_cost`)."""
    max_decision_expression_cost: int = DEFAULT_MAX_DECISION_COST
    """The cost units one decision's evaluations may spend together."""
    max_attempts: int = 1000
    """The largest `retry.max_attempts` a task may ask for (`limits.max_attempts`)."""
    min_retry_interval_seconds: float = 0.1
    """The shortest retry interval a task may ask for (`limits.min_retry_interval_seconds`)."""


# --- column sizes ----------------------------------------------------------------------
# The store's text columns are sized from these (app/store/_tables.py), and the API checks
# every name, key and id against them, so a value the database cannot keep is a 4xx at the
# door on every database, never a driver error (a 500) or a write that fails mid-run.

ID_CHARS = 64
"""Run and schedule ids (uuid hex, with room for ids chosen elsewhere)."""
NAME_CHARS = 200
"""Workflow, schedule, queue, signal and API key names."""
KEY_CHARS = 255
"""Idempotency keys, broker channels and message keys, cron expressions."""
MAX_VERSION = 2**31 - 1
"""The largest workflow version (the store keeps a 32-bit integer)."""
TIMEZONE_CHARS = 64
"""An IANA time zone name."""
MAP_ITEM_SUFFIX = len("[2147483647]")
"""A map item's timers carry `<task id>[<index>]` in the task id column (32-bit index)."""
TASK_ID_CHARS = NAME_CHARS - MAP_ITEM_SUFFIX
"""Task ids: a name with room left for the map item suffix."""


def text_problem(value: str, most: int) -> str | None:
    """Why `value` cannot be kept in a text column of `most` characters, or None.

    PostgreSQL refuses a NUL character in any text value, so none is ever accepted.
    """
    if len(value) > most:
        return f"is {len(value)} characters long; at most {most} are allowed"
    if "\x00" in value:
        return "must not contain a NUL character"
    return None
