"""Durations as users write them: `250ms`, `30s`, `1m`, `1h30m`, `2d`, or a number of seconds."""

from __future__ import annotations

import math
import re

_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_UNIT_ORDER = ("d", "h", "m", "s", "ms")
# `ms` must be tried before `m`, or "250ms" would read as 250 minutes and a stray "s".
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def parse_duration(value: str | int | float) -> float:
    """Return the duration in seconds; raise ValueError on anything negative or unreadable."""
    if isinstance(value, bool):  # bool is an int subclass, but `true` is never a duration
        raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '1m', '1h30m')")
    if isinstance(value, int | float):
        return _checked_number(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration (use e.g. '30s', '1m', '1h30m')")
    return _parse_text(value)


def _checked_number(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number of seconds")
    if value < 0:
        raise ValueError(f"duration {value!r} is negative")
    return float(value)


def _parse_text(text: str) -> float:
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped):
        return float(stripped)
    if stripped.startswith("-"):
        raise ValueError(f"duration {text!r} is negative")
    total = 0.0
    position = 0
    last_rank = -1
    for match in _PART.finditer(stripped):
        rank = _UNIT_ORDER.index(match.group(2))
        if match.start() != position or rank <= last_rank:
            break  # a gap of garbage, or units out of order / repeated ("1m1h", "1s1s")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position, last_rank = match.end(), rank
    if position == 0 or position != len(stripped):
        raise ValueError(
            f"{text!r} is not a duration: use a number of seconds or units in order "
            "d, h, m, s, ms (e.g. '250ms', '30s', '1h30m', '2d')"
        )
    return total
