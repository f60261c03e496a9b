"""The worker role: a handler registry, the task context, and the consumer loop."""

from app.modules.worker._context import TaskContext
from app.modules.worker._http import HttpExecutor
from app.modules.worker._registry import (
    DuplicateHandler,
    HandlerError,
    HandlerImportFailed,
    HandlerInputMismatch,
    HandlerRegistry,
    NotAHandler,
    handler,
)
from app.modules.worker._worker import Worker

__all__ = [
    "DuplicateHandler",
    "HandlerError",
    "HandlerImportFailed",
    "HandlerInputMismatch",
    "HandlerRegistry",
    "HttpExecutor",
    "NotAHandler",
    "TaskContext",
    "Worker",
    "handler",
]
