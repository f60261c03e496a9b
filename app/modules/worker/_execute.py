"""Running one dispatched attempt and turning its outcome into a result event."""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any

import anyio
import msgspec

from treadle.domain.events import DispatchTask, TaskCompleted, TaskFailed
from treadle.domain.state import ErrorInfo
from treadle.modules.worker._context import TaskContext
from treadle.modules.worker._http import HttpExecutor
from treadle.modules.worker._registry import (
    HandlerInputMismatch,
    HandlerRegistry,
    RegisteredHandler,
    ThreadRunner,
)
from treadle.modules.worker._secrets import redact_error

_json = msgspec.json.Encoder()

TIMEOUT_GRACE_SECONDS = 1.0
"""Extra time a worker allows past an attempt's timeout before abandoning it.

The orchestrator's durable timer is what times an attempt out (the task becomes
`timed_out`); the worker's own deadline is a backstop that frees the slot, and the grace
keeps it from racing the timer and reporting a plain failure first.
"""


DEFAULT_MAX_OUTPUT_BYTES = 1_048_576
"""`limits.max_output_bytes` for a worker built without settings."""


class OutputNotSerializable(Exception):
    """A handler returned a value that cannot be written as JSON."""


class OutputTooLarge(Exception):
    """An attempt's output is larger than `limits.max_output_bytes` as JSON."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"the output is {size} bytes as JSON, over limits.max_output_bytes ({limit})"
        )


async def execute(
    dispatch: DispatchTask,
    ctx: TaskContext,
    registry: HandlerRegistry,
    *,
    worker: str,
    traceback_lines: int,
    http: HttpExecutor | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    secrets: Sequence[str] = (),
    run_sync: ThreadRunner | None = None,
) -> TaskCompleted | TaskFailed:
    """Run the attempt within its timeout; any failure becomes a `TaskFailed`, with every
    value of `secrets` redacted from its message and traceback. A sync handler runs
    through `run_sync` when given (see `RegisteredHandler.call`).

    Never raises an `Exception`: one the handler or the `http` executor did not turn
    into a failure is a bug of the worker, recorded as a `WorkerError` naming its class,
    so the attempt ends (by its retry policy) instead of its delivery being requeued.
    """
    try:
        result = await _execute(
            dispatch,
            ctx,
            registry,
            worker=worker,
            traceback_lines=traceback_lines,
            http=http,
            max_output_bytes=max_output_bytes,
            run_sync=run_sync,
        )
    except Exception as exc:  # noqa: BLE001 -- see the docstring: every attempt ends recorded
        result = failed_attempt(dispatch, worker, worker_error(exc, traceback_lines))
    if isinstance(result, TaskFailed) and secrets:
        return msgspec.structs.replace(result, error=redact_error(result.error, secrets))
    return result


async def _execute(
    dispatch: DispatchTask,
    ctx: TaskContext,
    registry: HandlerRegistry,
    *,
    worker: str,
    traceback_lines: int,
    http: HttpExecutor | None,
    max_output_bytes: int,
    run_sync: ThreadRunner | None,
) -> TaskCompleted | TaskFailed:
    if dispatch.task_type == "http" and http is not None:
        return await _run_http(dispatch, http, worker, max_output_bytes)
    if dispatch.task_type != "handler":
        return failed_attempt(
            dispatch,
            worker,
            ErrorInfo(
                type="NotSupported",
                message=f"task type {dispatch.task_type!r} is not supported by this worker",
                retryable=False,
            ),
        )
    registered = registry.get(dispatch.handler or "")
    if registered is None:
        # Retryable: another worker (or this one after a deploy) may know the handler.
        return failed_attempt(
            dispatch,
            worker,
            ErrorInfo(
                type="HandlerNotFound",
                message=f"no handler named {dispatch.handler!r} is registered on this worker",
                retryable=True,
            ),
        )
    outcome = await _run_handler(
        registered, dispatch, ctx, traceback_lines, max_output_bytes, run_sync=run_sync
    )
    if isinstance(outcome, ErrorInfo):
        return failed_attempt(dispatch, worker, outcome)
    return _completed(dispatch, worker, outcome.value)


async def _run_http(
    dispatch: DispatchTask, http: HttpExecutor, worker: str, max_output_bytes: int
) -> TaskCompleted | TaskFailed:
    with anyio.move_on_after(_worker_deadline(dispatch.timeout_seconds)) as deadline:
        outcome = await http.run(dispatch.input)
    if deadline.cancelled_caught:
        outcome = _timed_out(dispatch)
    if not isinstance(outcome, ErrorInfo):
        try:
            check_output_size(_json.encode(outcome), max_output_bytes)
        except OutputTooLarge as exc:
            outcome = _not_retryable(exc)
    if isinstance(outcome, ErrorInfo):
        return failed_attempt(dispatch, worker, outcome)
    return _completed(dispatch, worker, outcome)


class _Output(msgspec.Struct, frozen=True, kw_only=True):
    """A handler's output, already plain JSON data (boxed: None is a valid output)."""

    value: Any


async def _run_handler(
    registered: RegisteredHandler,
    dispatch: DispatchTask,
    ctx: TaskContext,
    traceback_lines: int,
    max_output_bytes: int,
    *,
    run_sync: ThreadRunner | None,
) -> _Output | ErrorInfo:
    try:
        with anyio.move_on_after(_worker_deadline(dispatch.timeout_seconds)) as deadline:
            output = await registered.call(ctx, dispatch.input, run_sync=run_sync)
        if deadline.cancelled_caught:
            return _timed_out(dispatch)
        return _Output(value=to_json_value(output, max_output_bytes))
    except (HandlerInputMismatch, OutputNotSerializable, OutputTooLarge) as exc:
        # Retrying cannot help: the same input or the same code gives the same mismatch.
        return _not_retryable(exc)
    except Exception as exc:  # noqa: BLE001 -- a handler raising anything is the attempt failing
        return error_info(exc, traceback_lines)


def to_json_value(value: Any, max_bytes: int | None = None) -> Any:
    """The value as plain JSON data; `OutputNotSerializable` naming what went wrong, or
    `OutputTooLarge` when its JSON is over `max_bytes`."""
    try:
        encoded = _json.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise OutputNotSerializable(
            f"the handler returned a value that is not JSON-serialisable: {exc}"
        ) from exc
    if max_bytes is not None:
        check_output_size(encoded, max_bytes)
    return msgspec.json.decode(encoded)


def check_output_size(encoded: bytes, max_bytes: int) -> None:
    """Raise `OutputTooLarge` when an output's JSON is over `max_bytes`."""
    if len(encoded) > max_bytes:
        raise OutputTooLarge(len(encoded), max_bytes)


def _not_retryable(exc: Exception) -> ErrorInfo:
    return ErrorInfo(type=type(exc).__name__, message=str(exc), retryable=False)


def error_info(exc: BaseException, traceback_lines: int) -> ErrorInfo:
    """Describe an exception: its class name, message and the end of its traceback."""
    lines = "".join(traceback.format_exception(exc)).rstrip("\n").splitlines()
    tail = "\n".join(lines[-traceback_lines:]) if traceback_lines > 0 else None
    message = str(exc) or type(exc).__name__
    return ErrorInfo(type=type(exc).__name__, message=message, traceback=tail, retryable=True)


def worker_error(exc: BaseException, traceback_lines: int) -> ErrorInfo:
    """An exception the worker did not expect: `WorkerError`, the message naming its class.

    Retryable: the retry policy bounds how often a deterministic one is tried again.
    """
    info = error_info(exc, traceback_lines)
    return ErrorInfo(
        type="WorkerError",
        message=f"{type(exc).__name__}: {info.message}",
        traceback=info.traceback,
        retryable=True,
    )


def _worker_deadline(timeout: float | None) -> float | None:
    return None if timeout is None else timeout + TIMEOUT_GRACE_SECONDS


def _timed_out(dispatch: DispatchTask) -> ErrorInfo:
    # Retryable like any failure: the task's retry policy decides whether to try again.
    return ErrorInfo(
        type="TimeoutError",
        message=f"the attempt ran longer than its timeout of {dispatch.timeout_seconds}s",
        retryable=True,
    )


def _completed(dispatch: DispatchTask, worker: str, output: Any) -> TaskCompleted:
    return TaskCompleted(
        run_id=dispatch.run_id,
        task_id=dispatch.task_id,
        attempt=dispatch.attempt,
        output=output,
        worker=worker,
        item=dispatch.item,
    )


def failed_attempt(dispatch: DispatchTask, worker: str, info: ErrorInfo) -> TaskFailed:
    """The failure of `dispatch`'s attempt, reported by `worker`."""
    return TaskFailed(
        run_id=dispatch.run_id,
        task_id=dispatch.task_id,
        attempt=dispatch.attempt,
        error=info,
        worker=worker,
        item=dispatch.item,
    )
