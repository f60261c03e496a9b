"""retry_of: the one retry rule that tasks and map items share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from treadle.domain._retry import retry_of
from treadle.domain._task_rules import RetryPolicy
from treadle.domain.events import TimerKind
from treadle.domain.state import ErrorInfo

NOW = datetime(2026, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy(
    max_attempts=3,
    initial_interval=2.0,
    backoff=3.0,
    max_interval=10.0,
    non_retryable=frozenset({"Fatal"}),
)
BOOM = ErrorInfo(type="Boom", message="x")


@pytest.mark.parametrize(("failed", "delay"), [(1, 2.0), (2, 6.0)])
def test_a_retryable_failure_with_attempts_left_is_retried_after_the_backoff(
    failed: int, delay: float
) -> None:
    """The following attempt is due `initial * backoff ** (failed - 1)` seconds from now."""
    retry = retry_of(POLICY, failed, BOOM, NOW)
    assert retry is not None
    assert (retry.attempt, retry.delay_seconds) == (failed + 1, delay)
    assert retry.fire_at == NOW + timedelta(seconds=delay)
    assert retry.history_data() == {"delay_seconds": delay, "fire_at": retry.fire_at}


def test_the_backoff_is_capped_by_max_interval() -> None:
    """A late attempt waits `max_interval`, not the exponential's value."""
    policy = RetryPolicy(max_attempts=10, initial_interval=2.0, backoff=3.0, max_interval=10.0)
    retry = retry_of(policy, 5, BOOM, NOW)
    assert retry is not None
    assert retry.delay_seconds == 10.0


@pytest.mark.parametrize(
    "error",
    [
        ErrorInfo(type="Boom", message="x", retryable=False),
        ErrorInfo(type="Fatal", message="listed as non-retryable"),
    ],
    ids=["not-retryable", "non-retryable-type"],
)
def test_a_failure_the_policy_does_not_retry_ends_the_attempt(error: ErrorInfo) -> None:
    """An error marked not retryable, or of a type the policy lists, gets no retry."""
    assert retry_of(POLICY, 1, error, NOW) is None


def test_the_last_attempt_is_not_retried() -> None:
    """Attempt `max_attempts` failing ends the task (item) whatever the error."""
    assert retry_of(POLICY, 3, BOOM, NOW) is None


def test_the_retry_timer_names_the_following_attempt_and_the_item() -> None:
    """The RETRY timer is for the following attempt, of the map item when there is one."""
    retry = retry_of(POLICY, 1, BOOM, NOW)
    assert retry is not None
    timer = retry.timer("r1", "t1", 4)
    assert (timer.run_id, timer.kind, timer.task_id, timer.attempt, timer.item) == (
        "r1",
        TimerKind.RETRY,
        "t1",
        2,
        4,
    )
    assert timer.fire_at == retry.fire_at
    assert retry.timer("r1", "t1").item is None
