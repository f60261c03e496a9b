"""Errors every transport adapter raises; drivers' errors are mapped to these."""

from __future__ import annotations

from treadle.domain.errors import TreadleError


class TransportUnavailable(TreadleError):
    """The broker cannot be reached, or the transport is closed."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        detail = f": {reason}" if reason else ""
        super().__init__(f"transport at {url!r} is unavailable{detail}")


class UnknownTransport(TreadleError):
    """`transport.kind` names no transport Treadle knows."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"unknown transport kind {kind!r}")
