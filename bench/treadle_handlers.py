"""The no-op handler every Treadle benchmark workflow uses, so engine overhead is measured."""

import importlib
import os
from typing import Any

# A `--treadle-rev` snapshot from before issue 13 imports as `app`, later ones as `treadle`.
_treadle = importlib.import_module(os.environ.get("BENCH_TREADLE_PACKAGE", "treadle"))
TaskContext = _treadle.TaskContext
handler = _treadle.handler


@handler("bench.noop")
async def noop(ctx: TaskContext, input: Any) -> None:
    """Do nothing."""
