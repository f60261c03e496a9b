"""The `@handler` mark, the registry that collects marks, and the calling convention."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.unit.worker import sample_handlers
from treadle import TaskContext, handler
from treadle.modules.worker import (
    DuplicateHandler,
    HandlerImportFailed,
    HandlerInputMismatch,
    HandlerRegistry,
    NotAHandler,
)

CTX = TaskContext(run_id="r1", task_id="t1", attempt=1)


def test_decorator_marks_without_registering_globally() -> None:
    """`@handler` returns the same function and no registry sees it until asked to."""

    @handler("local.thing")
    async def thing(ctx: TaskContext) -> None:
        return None

    assert thing.__treadle_handler__ == "local.thing"  # type: ignore[attr-defined]
    assert "local.thing" not in HandlerRegistry()


def test_decorator_rejects_an_empty_name() -> None:
    """A handler needs a name to be dispatched to."""
    with pytest.raises(TypeError, match="non-empty name"):
        handler("")


def test_from_modules_collects_marked_functions() -> None:
    """Every marked function of the named modules is registered, unmarked ones are not."""
    registry = HandlerRegistry.from_modules(["tests.unit.worker.sample_handlers"])

    assert registry.names() == ["sample.add", "sample.echo"]
    add = registry.get("sample.add")
    assert add is not None
    assert add.function is sample_handlers.add


def test_import_failure_names_the_module() -> None:
    """A module that cannot be imported is reported by name with the reason."""
    with pytest.raises(HandlerImportFailed, match="broken_handlers") as info:
        HandlerRegistry.from_modules(["tests.unit.worker.broken_handlers"])

    assert info.value.module == "tests.unit.worker.broken_handlers"
    assert "broken on purpose" in info.value.reason


def test_missing_module_names_the_module() -> None:
    """A module that does not exist is reported by name."""
    with pytest.raises(HandlerImportFailed, match="no_such_module_here"):
        HandlerRegistry.from_modules(["no_such_module_here"])


def test_duplicate_name_names_both_functions() -> None:
    """Two functions with one handler name are an error naming both of them."""
    with pytest.raises(DuplicateHandler) as info:
        HandlerRegistry.from_modules(
            ["tests.unit.worker.sample_handlers", "tests.unit.worker.duplicate_handlers"]
        )

    assert info.value.name == "sample.add"
    assert "sample_handlers.add" in info.value.first
    assert "duplicate_handlers.add_again" in info.value.second


def test_adding_the_same_function_twice_is_harmless() -> None:
    """Re-adding one function (e.g. re-exported by two modules) keeps one registration."""
    registry = HandlerRegistry()
    registry.add(sample_handlers.add)
    registry.add(sample_handlers.add)

    assert len(registry) == 1


def test_add_requires_a_mark_or_a_name() -> None:
    """An unmarked function needs an explicit name to be registered."""
    registry = HandlerRegistry()
    with pytest.raises(NotAHandler, match="not_a_handler"):
        registry.add(sample_handlers.not_a_handler)

    registry.add(sample_handlers.not_a_handler, name="explicit")
    assert "explicit" in registry


@pytest.mark.anyio
async def test_keyword_parameters_receive_the_input_object() -> None:
    """A handler with keyword parameters is called with the input dict spread out."""
    registry = HandlerRegistry.from_modules(["tests.unit.worker.sample_handlers"])
    add = registry.get("sample.add")
    assert add is not None

    assert await add.call(CTX, {"a": 2, "b": 3}) == 5


@pytest.mark.anyio
async def test_a_single_input_parameter_receives_the_whole_value() -> None:
    """A handler whose only parameter after ctx is `input` gets the input as is."""
    registry = HandlerRegistry()
    registry.add(sample_handlers.echo)
    echo = registry.get("sample.echo")
    assert echo is not None

    assert await echo.call(CTX, [1, 2, 3]) == [1, 2, 3]
    assert await echo.call(CTX, {"a": 1}) == {"a": 1}


@pytest.mark.anyio
async def test_a_handler_without_parameters_accepts_no_input() -> None:
    """A handler that takes only ctx is called when the task has no input."""

    @handler("nothing")
    async def nothing(ctx: TaskContext) -> str:
        return ctx.task_id

    registry = HandlerRegistry()
    registry.add(nothing)
    registered = registry.get("nothing")
    assert registered is not None

    assert await registered.call(CTX, None) == "t1"


@pytest.mark.anyio
async def test_input_that_does_not_fit_is_a_mismatch() -> None:
    """Missing keyword arguments or a non-object input raise `HandlerInputMismatch`."""
    registry = HandlerRegistry.from_modules(["tests.unit.worker.sample_handlers"])
    add = registry.get("sample.add")
    assert add is not None

    with pytest.raises(HandlerInputMismatch, match="'b'"):
        await add.call(CTX, {"a": 1})
    with pytest.raises(HandlerInputMismatch, match="is a list"):
        await add.call(CTX, [1, 2])


@pytest.mark.anyio
async def test_sync_handlers_run_in_a_worker_thread() -> None:
    """A plain `def` handler runs off the event loop's thread."""
    seen: list[threading.Thread] = []

    @handler("sync.where")
    def where(ctx: TaskContext, **input: Any) -> str:
        seen.append(threading.current_thread())
        return "ok"

    registry = HandlerRegistry()
    registry.add(where)
    registered = registry.get("sync.where")
    assert registered is not None

    assert await registered.call(CTX, {}) == "ok"
    assert seen[0] is not threading.current_thread()
