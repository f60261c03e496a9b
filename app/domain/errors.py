"""Domain errors: one root, each subclass carries its facts as attributes."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec


class TreadleError(Exception):
    """Root of every error Treadle raises on purpose."""


class ValidationIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem in a definition or input, located by a dotted path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class DefinitionInvalid(TreadleError):
    """A workflow definition failed validation."""

    def __init__(self, issues: Sequence[ValidationIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid definition")


class ExpressionError(TreadleError):
    """An expression did not parse or could not be evaluated."""

    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"expression {expression!r}: {reason}")


class DynamicValueInvalid(TreadleError):
    """A task field written as an expression evaluated to a value it cannot take."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class ExpressionTooLarge(ExpressionError):
    """An expression built a value larger than the configured limit, as JSON."""

    def __init__(self, expression: str, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        reason = f"its value takes more than {limit} bytes as JSON (limits.max_expression_bytes)"
        super().__init__(expression, reason)


class ExpressionBudgetExceeded(ExpressionError):
    """An expression (or all of one decision's) needed more work than the configured budget."""

    def __init__(self, expression: str, spent: int, limit: int, key: str) -> None:
        self.spent = spent
        self.limit = limit
        self.key = key
        reason = f"it needs more than {limit} cost units to evaluate ({key})"
        super().__init__(expression, reason)


class LimitExceeded(TreadleError):
    """A request is larger than a configured limit; `limit` names the setting."""

    def __init__(self, limit: str, size: int, maximum: int, what: str) -> None:
        self.limit = limit
        self.size = size
        self.maximum = maximum
        self.what = what
        super().__init__(f"{what} takes {size} bytes, more than the limit of {maximum} ({limit})")


class InputInvalid(TreadleError):
    """A run's input does not match the workflow's input_schema."""

    def __init__(self, issues: Sequence[ValidationIssue]) -> None:
        self.issues = list(issues)
        super().__init__("; ".join(str(i) for i in self.issues) or "invalid input")


class WorkflowNotFound(TreadleError):
    """No workflow (or no such version of it) is registered."""

    def __init__(self, name: str, version: int | None = None) -> None:
        self.name = name
        self.version = version
        where = f"{name!r} version {version}" if version is not None else repr(name)
        super().__init__(f"workflow {where} is not registered")


class RunNotFound(TreadleError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"run {run_id!r} does not exist")


class TaskNotFound(TreadleError):
    """The run has no task with this id (of the kind asked for, e.g. a map task)."""

    def __init__(self, run_id: str, task_id: str, kind: str = "task") -> None:
        self.run_id = run_id
        self.task_id = task_id
        super().__init__(f"run {run_id!r} has no {kind} {task_id!r}")


class RunNotActive(TreadleError):
    """The run is finished (or otherwise not in a state that allows the action)."""

    def __init__(self, run_id: str, status: str, action: str) -> None:
        self.run_id = run_id
        self.status = status
        self.action = action
        super().__init__(f"cannot {action} run {run_id!r}: it is {status}")


class InvalidCursor(TreadleError):
    """A pagination cursor was not one Treadle issued."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__("the cursor is not valid; use next_cursor from a previous page")


class IdempotencyConflict(TreadleError):
    """An idempotency key was used before to start a run of another workflow or input."""

    def __init__(self, key: str, run_id: str, differs: str) -> None:
        self.key = key
        self.run_id = run_id
        self.differs = differs
        super().__init__(
            f"the Idempotency-Key was already used for run {run_id!r} with a different "
            f"{differs}; use a new key for a new run"
        )


class SignalNotAccepted(TreadleError):
    """The run's definition neither waits for a signal of this name nor buffers any name."""

    def __init__(self, run_id: str, name: str, accepted: Sequence[str]) -> None:
        self.run_id = run_id
        self.name = name
        self.accepted = list(accepted)
        known = ", ".join(repr(n) for n in self.accepted) or "none"
        super().__init__(
            f"run {run_id!r} does not wait for a signal {name!r} (its signals: {known})"
        )
