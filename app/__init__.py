"""Treadle: durable workflow orchestration.

`handler` and `TaskContext` are the Python surface users write tasks against; importing
them must stay light (no web framework, no database driver).
"""

from app.modules.worker._context import TaskContext
from app.modules.worker._registry import handler

__all__ = ["TaskContext", "handler"]
