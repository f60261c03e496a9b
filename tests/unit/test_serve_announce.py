"""The start-up line's addresses open in a browser on the same machine."""

from __future__ import annotations

import pytest

from treadle.serving.serve import _browsable


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("localhost", "localhost"),
        ("0.0.0.0", "127.0.0.1"),
        ("::", "[::1]"),
        ("::1", "[::1]"),
        ("10.1.2.3", "10.1.2.3"),
    ],
)
def test_a_wildcard_bind_is_shown_as_loopback(host: str, shown: str) -> None:
    """Every interface (0.0.0.0, ::) is reachable on loopback; IPv6 goes in brackets."""
    assert _browsable(host) == shown
