"""Child runs of `workflow` tasks: starting them, cancelling them, reporting their end.

All of it travels on the events channel through the outbox, so each step survives a
crash between the decision that asked for it and its effect:

- `StartChildRun` (from the parent's decision) is handled by starting the child with
  `RunService.start_run` and the command's idempotency key (a redelivery finds the same
  child), then telling the parent the child's id (`ChildRunStarted`). A child that
  cannot start (unknown workflow, bad input, nested deeper than `MAX_CHILD_DEPTH`) ends
  the parent's task as failed.
- A finished child's `RunFinished` becomes `ChildRunFinished` for its parent (written to
  the outbox with the child's last decision: `_changes.child_finished_message`).
- `CancelChildRun` (the parent's task ended first) is handled by cancelling the child;
  a child already finished is left alone.
"""

from __future__ import annotations

import contextlib

from treadle.domain.errors import (
    InputInvalid,
    LimitExceeded,
    RunNotActive,
    RunNotFound,
    WorkflowNotFound,
)
from treadle.domain.events import CancelChildRun, ChildRunFinished, ChildRunStarted, StartChildRun
from treadle.domain.state import ErrorInfo, RunStatus
from treadle.modules.orchestrator._runs import RunService

ChildCommand = StartChildRun | CancelChildRun

MAX_CHILD_DEPTH = 10
"""How deep child runs nest below a top-level run, so a workflow that starts itself ends."""


async def handle_child_command(
    runs: RunService, command: ChildCommand, traceparent: str | None
) -> None:
    """Carry out a child-run command taken from the events channel."""
    if isinstance(command, CancelChildRun):
        # A child already over (or gone) has nothing left to cancel.
        with contextlib.suppress(RunNotFound, RunNotActive):
            await runs.cancel_run(command.child_run_id, command.reason)
        return
    await _start_child(runs, command, traceparent)


async def _start_child(runs: RunService, command: StartChildRun, traceparent: str | None) -> None:
    depth = await runs.nesting_depth(command.run_id, MAX_CHILD_DEPTH) + 1
    if depth > MAX_CHILD_DEPTH:
        message = (
            f"a child run of '{command.workflow}' would nest {depth} levels deep, more than"
            f" {MAX_CHILD_DEPTH}; a workflow that starts itself needs a `when` that stops it"
        )
        error = ErrorInfo(type="ChildDepthExceeded", message=message, retryable=False)
        await _not_started(runs, command, error, traceparent)
        return
    try:
        child, _ = await runs.start_run(
            command.workflow,
            command.version,
            command.input,
            idempotency_key=command.idempotency_key,
            traceparent=traceparent,
            parent_run_id=command.run_id,
            parent_task_id=command.task_id,
        )
    except (WorkflowNotFound, InputInvalid, LimitExceeded) as exc:
        error = ErrorInfo(type=type(exc).__name__, message=str(exc), retryable=False)
        await _not_started(runs, command, error, traceparent)
        return
    started = ChildRunStarted(
        run_id=command.run_id,
        task_id=command.task_id,
        attempt=command.attempt,
        child_run_id=child.id,
    )
    await runs.apply_event(command.run_id, started, traceparent=traceparent)


async def _not_started(
    runs: RunService, command: StartChildRun, error: ErrorInfo, traceparent: str | None
) -> None:
    """The child could not start: its task in the parent fails with `error`."""
    failed = ChildRunFinished(
        run_id=command.run_id, task_id=command.task_id, status=RunStatus.FAILED, error=error
    )
    await runs.apply_event(command.run_id, failed, traceparent=traceparent)
