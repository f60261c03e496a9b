"""parse_duration: the duration forms users write, and what it refuses."""

from __future__ import annotations

import pytest

from treadle.domain.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("2d", 172_800.0),
        ("1d2h3m4s5ms", 93_784.005),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        ("45", 45.0),
        ("0s", 0.0),
        (12, 12.0),
        (0.5, 0.5),
    ],
)
def test_parses_every_unit_and_plain_numbers(text: str | float, seconds: float) -> None:
    """Units d, h, m, s, ms combine in order; numbers and numeric strings are seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "bad", ["", "soon", "10x", "1m1h", "1s1s", "s", "10 s", "1h-5m", "ms30", "30s!"]
)
def test_rejects_garbage_with_a_clear_message(bad: str) -> None:
    """Anything but a number or ordered units raises ValueError that quotes the value."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [-1, -0.5, "-5s", "-3"])
def test_rejects_negative_durations(bad: str | float) -> None:
    """A negative duration is an error, not a zero."""
    with pytest.raises(ValueError, match="negative"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_rejects_non_finite_numbers(bad: float) -> None:
    """Infinity and NaN are not durations."""
    with pytest.raises(ValueError, match="finite"):
        parse_duration(bad)


def test_rejects_booleans() -> None:
    """`true` in JSON is not one second, even though bool is an int in Python."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(True)
