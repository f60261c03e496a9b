"""Running one attempt: the outcomes a dispatch can have and how they are reported."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from treadle import TaskContext, handler
from treadle.domain.events import DispatchTask, TaskCompleted, TaskFailed
from treadle.modules.worker import HandlerRegistry
from treadle.modules.worker._execute import execute


@handler("ok")
async def ok(ctx: TaskContext, value: int) -> dict[str, int]:
    return {"double": value * 2}


@handler("boom")
def boom(ctx: TaskContext) -> None:
    raise ValueError("bad value")


@handler("slow")
async def slow(ctx: TaskContext) -> None:
    await anyio.sleep(10)


@handler("opaque")
async def opaque(ctx: TaskContext) -> Any:
    return object()


def _registry() -> HandlerRegistry:
    registry = HandlerRegistry()
    for fn in (ok, boom, slow, opaque):
        registry.add(fn)
    return registry


def _dispatch(**overrides: Any) -> DispatchTask:
    fields: dict[str, Any] = {
        "run_id": "r1",
        "task_id": "t1",
        "attempt": 1,
        "task_type": "handler",
        "queue": "default",
        "handler": "ok",
        "input": {"value": 21},
    }
    fields.update(overrides)
    return DispatchTask(**fields)


async def _run(dispatch: DispatchTask) -> TaskCompleted | TaskFailed:
    ctx = TaskContext(run_id=dispatch.run_id, task_id=dispatch.task_id, attempt=dispatch.attempt)
    return await execute(dispatch, ctx, _registry(), worker="w1", traceback_lines=5)


@pytest.mark.anyio
async def test_a_returned_value_completes_the_attempt() -> None:
    """The handler's return value becomes the output of `TaskCompleted`."""
    result = await _run(_dispatch())

    assert result == TaskCompleted(
        run_id="r1", task_id="t1", attempt=1, output={"double": 42}, worker="w1"
    )


@pytest.mark.anyio
async def test_an_exception_fails_the_attempt_with_its_class_and_traceback() -> None:
    """A raised exception is reported by class name, message and traceback tail."""
    result = await _run(_dispatch(handler="boom", input=None))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "ValueError"
    assert result.error.message == "bad value"
    assert result.error.retryable is True
    assert result.error.traceback is not None
    assert "ValueError: bad value" in result.error.traceback
    assert len(result.error.traceback.splitlines()) <= 5


@pytest.mark.anyio
async def test_an_unknown_handler_is_a_retryable_failure() -> None:
    """A handler name no one registered fails as `HandlerNotFound`, retryable."""
    result = await _run(_dispatch(handler="nope"))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "HandlerNotFound"
    assert result.error.retryable is True


@pytest.mark.anyio
async def test_other_task_types_are_not_supported_yet() -> None:
    """A task type other than `handler` fails as `NotSupported`, not retryable."""
    result = await _run(_dispatch(task_type="http", handler=None))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "NotSupported"
    assert result.error.retryable is False


@pytest.mark.anyio
async def test_an_attempt_past_its_timeout_fails() -> None:
    """A handler still running past `timeout_seconds` (plus grace) is stopped and reported."""
    with anyio.fail_after(5):
        result = await _run(_dispatch(handler="slow", input=None, timeout_seconds=0.05))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "TimeoutError"
    assert "0.05" in result.error.message


@pytest.mark.anyio
async def test_output_that_is_not_json_fails_without_retry() -> None:
    """A return value msgspec cannot encode fails the attempt with a clear message."""
    result = await _run(_dispatch(handler="opaque", input=None))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "OutputNotSerializable"
    assert "JSON" in result.error.message
    assert result.error.retryable is False


@pytest.mark.anyio
async def test_input_that_does_not_fit_fails_without_retry() -> None:
    """An input missing a handler's parameter fails as `HandlerInputMismatch`."""
    result = await _run(_dispatch(input={"other": 1}))

    assert isinstance(result, TaskFailed)
    assert result.error.type == "HandlerInputMismatch"
    assert result.error.retryable is False


@handler("bulky")
async def bulky(ctx: TaskContext, size: int) -> str:
    return "x" * size


@pytest.mark.anyio
async def test_an_output_over_max_output_bytes_fails_without_retry() -> None:
    """A return value over `limits.max_output_bytes` as JSON fails as OutputTooLarge,
    naming its size and the key; one at the limit completes."""
    registry = _registry()
    registry.add(bulky)
    ctx = TaskContext(run_id="r1", task_id="t1", attempt=1)

    async def run(size: int) -> TaskCompleted | TaskFailed:
        dispatch = _dispatch(handler="bulky", input={"size": size})
        return await execute(
            dispatch, ctx, registry, worker="w1", traceback_lines=5, max_output_bytes=1000
        )

    over = await run(999)  # 1001 bytes with its quotes
    assert isinstance(over, TaskFailed)
    assert (over.error.type, over.error.retryable) == ("OutputTooLarge", False)
    assert "1001 bytes" in over.error.message
    assert "limits.max_output_bytes (1000)" in over.error.message
    assert isinstance(await run(998), TaskCompleted)
