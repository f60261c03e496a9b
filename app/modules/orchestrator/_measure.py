"""What a committed decision means for the metrics: dispatches, attempt outcomes, run ends.

Read from the decision itself (its commands and history entries), after commit, so a
decision the store retried or rolled back is never counted.
"""

from __future__ import annotations

from collections.abc import Iterator

from treadle.domain.compile import Workflow
from treadle.domain.events import Decision, DispatchTask, HistoryEntry, RunFinished
from treadle.observability import Metrics, TaskOutcome, get_logger

log = get_logger(__name__)

_ENDED_ATTEMPT = {
    "task.completed": TaskOutcome.COMPLETED,
    "task.failed": TaskOutcome.FAILED,
    "task.timed_out": TaskOutcome.TIMED_OUT,
    "task.cancelled": TaskOutcome.CANCELLED,
}


def record_decision(metrics: Metrics, decision: Decision, workflow: Workflow) -> None:
    """Count the decision's dispatches, ended attempts and run end (and log the end)."""
    for command in decision.commands:
        if isinstance(command, DispatchTask):
            metrics.task_dispatched(command.task_type, command.handler)
        elif isinstance(command, RunFinished):
            metrics.run_finished(decision.state.workflow, str(command.status))
            log.info("run finished", status=str(command.status))
    for task_id, outcome in attempt_outcomes(decision.history):
        task = workflow.tasks.get(task_id)
        if task is not None:
            metrics.task_finished(task.type, task.handler, outcome)


def attempt_outcomes(history: list[HistoryEntry]) -> Iterator[tuple[str, TaskOutcome]]:
    """(task id, outcome) of each attempt the history ends.

    A failure followed by a scheduled retry of the same task is `retried`, not `failed`;
    a timeout stays `timed_out` whether or not a retry follows. Entries without an
    attempt (a task cancelled or failed before it was ever dispatched) end no attempt.
    """
    retried = {entry.task_id for entry in history if entry.type == "task.retry_scheduled"}
    for entry in history:
        outcome = _ENDED_ATTEMPT.get(entry.type)
        if outcome is None or entry.task_id is None or not entry.attempt:
            continue
        if outcome is TaskOutcome.FAILED and entry.task_id in retried:
            outcome = TaskOutcome.RETRIED
        yield entry.task_id, outcome
