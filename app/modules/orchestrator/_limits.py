"""Size checks on what callers hand the run service, each naming the `[limits]` key."""

from __future__ import annotations

from typing import Any

import msgspec

from treadle.domain.errors import LimitExceeded


def check_json_size(value: Any, maximum: int, *, limit: str, what: str) -> None:
    """Raise LimitExceeded when `value` takes more than `maximum` bytes as JSON."""
    try:
        size = len(msgspec.json.encode(value))
    except (TypeError, msgspec.EncodeError):
        return  # not JSON: the caller's own validation reports it
    if size > maximum:
        raise LimitExceeded(f"limits.{limit}", size, maximum, what)
