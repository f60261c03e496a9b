"""Keep secrets and bulky payloads out of log lines.

A structlog processor: it runs on every event dict (ours and third-party records alike)
just before rendering, so nothing a caller binds or passes can bypass it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import msgspec

REDACTED = "[redacted]"

_SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authori[sz]ation|api[_-]?key|credential|"
    r"private[_-]?key|cookie|dsn",
    re.IGNORECASE,
)
"""Key names whose values are secrets by their name alone (`db_password`, `X-Api-Key`)."""

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)[^\s/]+@")
"""`scheme://user:password@` inside any string; the password part is replaced. Greedy up to
the last `@` before the path, so a password with an unencoded `@` is hidden whole."""

_NOT_VALUES = frozenset({"exc_info", "exception", "stack", "stack_info", "_record"})
"""Keys that hold tracebacks or stdlib internals: long by nature, and not payloads."""

_MESSAGE_KEYS = frozenset({"event", "message"})
"""The log message itself is truncated rather than elided, so the line still says something."""

_MAX_DEPTH = 8
"""How deep nested dicts are searched for secret keys; deeper values are left as they are."""


def strip_url_passwords(text: str) -> str:
    """`postgresql://u:pw@h/db` -> `postgresql://u:***@h/db`, anywhere in `text`."""
    if "://" not in text:  # the common case costs one substring search
        return text
    return _URL_PASSWORD.sub(r"\g<head>***@", text)


def is_secret_key(key: object) -> bool:
    """Whether a mapping key's name says its value is a secret."""
    return isinstance(key, str) and _SECRET_KEY.search(key) is not None


class Redactor:
    """A structlog processor hiding secrets and eliding values over `max_value_bytes`."""

    def __init__(self, max_value_bytes: int) -> None:
        self.max_value_bytes = max_value_bytes

    def __call__(
        self, _logger: object, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if key in _NOT_VALUES:
                continue
            if key in _MESSAGE_KEYS and isinstance(value, str):
                event_dict[key] = self._truncate(strip_url_passwords(value))
            elif is_secret_key(key):
                event_dict[key] = REDACTED
            else:
                event_dict[key] = self._clean(value)
        return event_dict

    def _clean(self, value: Any) -> Any:
        size = _json_size(value)
        if size > self.max_value_bytes:
            return f"<{size} bytes elided>"
        return _scrub(value, _MAX_DEPTH)

    def _truncate(self, message: str) -> str:
        encoded = message.encode()
        if len(encoded) <= self.max_value_bytes:
            return message
        kept = encoded[: self.max_value_bytes].decode(errors="ignore")
        return f"{kept}... <{len(encoded) - len(kept.encode())} bytes elided>"


def _scrub(value: Any, depth: int) -> Any:
    """Redact secret keys and URL passwords inside an (already small) value."""
    if isinstance(value, str):
        return strip_url_passwords(value)
    if depth <= 0:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) else _scrub(v, depth - 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, depth - 1) for item in value]
    return value


def _json_size(value: Any) -> int:
    """Bytes of `value` as JSON; what a log shipper would have to carry."""
    if isinstance(value, str):
        return len(value.encode()) + 2  # the quotes; escapes are rare enough to ignore
    if value is None or isinstance(value, bool | int | float):
        return 8
    try:
        return len(msgspec.json.encode(value, enc_hook=str))
    except (TypeError, ValueError, OverflowError):
        return len(repr(value))
