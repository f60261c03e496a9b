"""The limits the domain enforces, set from the `[limits]` settings section."""

from __future__ import annotations

import msgspec

from app.domain._bounded import DEFAULT_MAX_BYTES
from app.domain._cost import DEFAULT_MAX_COST, DEFAULT_MAX_DECISION_COST


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
