"""The test-only crash points: parsing `TREADLE_CRASH_AT` and exiting on the Nth hit."""

from __future__ import annotations

import subprocess
import sys

import pytest

from treadle.testing import crash as _crash


def test_unset_binds_the_no_op() -> None:
    """With nothing planned the crash point is the shared no-op (nothing is counted)."""
    assert _crash.crasher({}) is _crash._noop
    assert _crash.crash_point("after_commit_before_publish") is None


def test_parse_reads_names_and_counts() -> None:
    """`name:N` plans the Nth hit; a bare name the first."""
    plan = _crash.parse("after_publish_before_ack:3, after_decision_before_ack")
    assert plan == {"after_publish_before_ack": 3, "after_decision_before_ack": 1}


def test_an_unknown_point_is_refused() -> None:
    """A typo in the variable fails loudly instead of never crashing."""
    with pytest.raises(_crash.UnknownCrashPoint) as caught:
        _crash.parse("after_lunch")
    assert caught.value.name == "after_lunch"


def test_exits_with_137_on_the_nth_hit_only() -> None:
    """The planned point exits on its Nth hit; other points and later hits do nothing."""
    exits: list[int] = []
    crash = _crash.crasher({"after_publish_before_ack": 2}, exit=exits.append)
    crash("after_effect_before_publish")
    crash("after_publish_before_ack")
    assert exits == []
    crash("after_publish_before_ack")
    crash("after_publish_before_ack")
    assert exits == [137]


def test_the_variable_kills_a_real_process() -> None:
    """Importing with the variable set makes the named point `os._exit(137)`."""
    code = (
        "from treadle.testing.crash import crash_point; "
        "crash_point('after_commit_before_publish'); print(1)"
    )
    env = {"TREADLE_CRASH_AT": "after_commit_before_publish", "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, check=False, text=True
    )
    assert done.returncode == 137
    assert done.stdout == ""
