"""Task handlers: the `@handler` mark, the registry that collects them, and how they are called.

The decorator only sets an attribute on the function, so importing a module of handlers has
no side effect on any global state: a `HandlerRegistry` is built explicitly from modules.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar, cast

import anyio.to_thread

from treadle.domain.errors import TreadleError

F = TypeVar("F", bound=Callable[..., Any])

ThreadRunner = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a sync handler's bound call in a thread (the worker's bounded `SyncSlot.run_sync`)."""

_MARK = "__treadle_handler__"


class HandlerError(TreadleError):
    """Base of the errors raised while collecting handlers."""


class HandlerImportFailed(HandlerError):
    """A module named as a source of handlers could not be imported."""

    def __init__(self, module: str, reason: str) -> None:
        self.module = module
        self.reason = reason
        super().__init__(f"cannot import handler module {module!r}: {reason}")


class DuplicateHandler(HandlerError):
    """Two functions claim the same handler name."""

    def __init__(self, name: str, first: str, second: str) -> None:
        self.name = name
        self.first = first
        self.second = second
        super().__init__(f"handler {name!r} is defined twice: by {first} and by {second}")


class NotAHandler(HandlerError):
    """A function given to the registry carries no `@handler` mark and no explicit name."""

    def __init__(self, function: str) -> None:
        self.function = function
        super().__init__(f"{function} is not marked with @handler(name)")


class HandlerInputMismatch(HandlerError):
    """The task input does not fit the handler's parameters."""

    def __init__(self, handler: str, reason: str) -> None:
        self.handler = handler
        self.reason = reason
        super().__init__(f"input does not fit handler {handler!r}: {reason}")


def handler(name: str) -> Callable[[F], F]:
    """Mark a function (`async def` or `def`) as the handler of tasks named `name`."""
    if not name or not isinstance(name, str):
        raise TypeError("@handler needs a non-empty name, e.g. @handler('orders.charge')")

    def mark(fn: F) -> F:
        setattr(fn, _MARK, name)
        return fn

    return mark


def handler_name(fn: Callable[..., Any]) -> str | None:
    """The name `@handler` gave this function, or None."""
    name = getattr(fn, _MARK, None)
    return name if isinstance(name, str) else None


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


@dataclass(frozen=True)
class RegisteredHandler:
    """A handler with what the worker needs to know to call it."""

    name: str
    function: Callable[..., Any]
    is_async: bool
    takes_whole_input: bool
    """True when the only parameter after ctx is named `input`: it gets the value as is."""
    signature: inspect.Signature

    @classmethod
    def of(cls, name: str, fn: Callable[..., Any]) -> RegisteredHandler:
        signature = inspect.signature(fn)
        after_ctx = list(signature.parameters.values())[1:]
        whole = (
            len(after_ctx) == 1
            and after_ctx[0].name == "input"
            and after_ctx[0].kind not in (after_ctx[0].VAR_KEYWORD, after_ctx[0].VAR_POSITIONAL)
        )
        return cls(
            name=name,
            function=fn,
            is_async=_is_async(fn),
            takes_whole_input=whole,
            signature=signature,
        )

    def bind(self, ctx: Any, value: Any) -> Callable[[], Any]:
        """Apply the calling convention; raise `HandlerInputMismatch` if the input won't fit."""
        if self.takes_whole_input:
            args: tuple[Any, ...] = (ctx, value)
            kwargs: dict[str, Any] = {}
        elif value is None:
            args, kwargs = (ctx,), {}
        elif isinstance(value, Mapping):
            args, kwargs = (ctx,), dict(value)
        else:
            raise HandlerInputMismatch(
                self.name,
                f"the input is a {type(value).__name__}, but the handler takes keyword "
                "parameters; pass an object, or name the single parameter `input`",
            )
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise HandlerInputMismatch(self.name, str(exc)) from exc
        return functools.partial(self.function, *args, **kwargs)

    async def call(self, ctx: Any, value: Any, *, run_sync: ThreadRunner | None = None) -> Any:
        """Run the handler: async ones in the event loop, sync ones in a thread, through
        `run_sync` when given (the worker's, which bounds and counts its threads)."""
        bound = self.bind(ctx, value)
        if self.is_async:
            return await cast("Awaitable[Any]", bound())
        if run_sync is not None:
            return await run_sync(bound)
        # abandon_on_cancel: a timed-out sync handler cannot be interrupted, but the
        # attempt must still end on time; the thread finishes (and is ignored) later.
        return await anyio.to_thread.run_sync(bound, abandon_on_cancel=True)


def _is_async(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 -- callable objects with async __call__
    )


class HandlerRegistry:
    """The handlers one worker can run, by name."""

    def __init__(self, handlers: Iterable[RegisteredHandler] = ()) -> None:
        self._handlers: dict[str, RegisteredHandler] = {}
        for registered in handlers:
            self._put(registered)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> HandlerRegistry:
        """Import each module and collect every `@handler` function defined in it."""
        registry = cls()
        for module_name in modules:
            registry.add_module(_import(module_name))
        return registry

    def add_module(self, module: ModuleType) -> None:
        """Collect the marked functions of an imported module (re-exports count once)."""
        seen: set[int] = set()
        for value in vars(module).values():
            if callable(value) and handler_name(value) and id(value) not in seen:
                seen.add(id(value))
                self.add(value)

    def add(self, fn: Callable[..., Any], name: str | None = None) -> None:
        """Register one function under its `@handler` name (or `name`)."""
        resolved = name or handler_name(fn)
        if resolved is None:
            raise NotAHandler(_qualified(fn))
        self._put(RegisteredHandler.of(resolved, fn))

    def get(self, name: str) -> RegisteredHandler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def __len__(self) -> int:
        return len(self._handlers)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def _put(self, registered: RegisteredHandler) -> None:
        existing = self._handlers.get(registered.name)
        if existing is not None and existing.function is not registered.function:
            raise DuplicateHandler(
                registered.name, _qualified(existing.function), _qualified(registered.function)
            )
        self._handlers[registered.name] = registered


def _import(module_name: str) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # any import-time error is the user's module failing to load
        raise HandlerImportFailed(module_name, f"{type(exc).__name__}: {exc}") from exc
