"""The worker role: a handler registry, the task context, and the consumer loop.

`Worker`, `HttpExecutor` and `SyncThreads` load on first use: user handler modules import
`handler` and `TaskContext` through this package, and that must not pull in httpx,
httpcore and the telemetry stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from treadle.modules.worker._context import TaskContext
from treadle.modules.worker._registry import (
    DuplicateHandler,
    HandlerError,
    HandlerImportFailed,
    HandlerInputMismatch,
    HandlerRegistry,
    NotAHandler,
    handler,
)

if TYPE_CHECKING:
    from treadle.modules.worker._http import HttpExecutor
    from treadle.modules.worker._threads import SyncThreads, SyncThreadsExhausted
    from treadle.modules.worker._worker import Worker

__all__ = [
    "DuplicateHandler",
    "HandlerError",
    "HandlerImportFailed",
    "HandlerInputMismatch",
    "HandlerRegistry",
    "HttpExecutor",
    "NotAHandler",
    "SyncThreads",
    "SyncThreadsExhausted",
    "TaskContext",
    "Worker",
    "handler",
]

_LAZY = {
    "HttpExecutor": "treadle.modules.worker._http",
    "SyncThreads": "treadle.modules.worker._threads",
    "SyncThreadsExhausted": "treadle.modules.worker._threads",
    "Worker": "treadle.modules.worker._worker",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 -- lazy by design, see the module docstring

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
