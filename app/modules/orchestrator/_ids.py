"""Run ids that sort by creation time: 48 bits of milliseconds, then 80 random bits."""

from __future__ import annotations

import secrets
from datetime import datetime


def new_run_id(now: datetime) -> str:
    """A 32-hex-digit id; ids made in later milliseconds sort after earlier ones."""
    millis = int(now.timestamp() * 1000) & 0xFFFF_FFFF_FFFF
    return f"{millis:012x}{secrets.token_hex(10)}"
