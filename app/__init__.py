"""Treadle: durable workflow orchestration.

`handler` and `TaskContext` are the Python surface users write tasks against; importing
them must stay light (no web framework, no database driver). They load on first use, so
that `import treadle.client` (or the CLI) does not pull in the worker and its telemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from treadle.modules.worker._context import TaskContext
    from treadle.modules.worker._registry import handler

__all__ = ["TaskContext", "handler"]

_LAZY = {
    "TaskContext": "treadle.modules.worker._context",
    "handler": "treadle.modules.worker._registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 -- lazy by design, see the module docstring

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
