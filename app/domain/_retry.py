"""The retry policy applied to a failed attempt: one rule for tasks and map items alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from treadle.domain._run_draft import after
from treadle.domain._task_rules import RetryPolicy
from treadle.domain.events import StartTimer, TimerKind
from treadle.domain.state import ErrorInfo


@dataclass(frozen=True, kw_only=True)
class Retry:
    """The retry a failed attempt earned: the attempt that follows, and when it is due."""

    attempt: int
    delay_seconds: float
    fire_at: datetime

    def timer(self, run_id: str, task_id: str, item: int | None = None) -> StartTimer:
        """The RETRY timer that dispatches the following attempt when it comes due."""
        return StartTimer(
            run_id=run_id,
            kind=TimerKind.RETRY,
            task_id=task_id,
            attempt=self.attempt,
            item=item,
            fire_at=self.fire_at,
        )

    def history_data(self) -> dict[str, Any]:
        """What the `retry_scheduled` history entry says of it."""
        return {"delay_seconds": self.delay_seconds, "fire_at": self.fire_at}


def retry_of(policy: RetryPolicy, attempt: int, error: ErrorInfo, now: datetime) -> Retry | None:
    """The retry of failed attempt `attempt` under `policy`, or None when it ends here."""
    if not _may_retry(policy, attempt, error):
        return None
    delay = policy.delay(attempt)
    return Retry(attempt=attempt + 1, delay_seconds=delay, fire_at=after(now, delay))


def _may_retry(policy: RetryPolicy, attempt: int, error: ErrorInfo) -> bool:
    """The error is retryable, its type is not listed as non-retryable, attempts are left."""
    return (
        error.retryable and error.type not in policy.non_retryable and attempt < policy.max_attempts
    )
