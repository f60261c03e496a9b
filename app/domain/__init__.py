"""The pure model of Treadle: definitions, expressions, state and the decider. No I/O.

The names below load on first use: a light reader of one domain module (the typed client
reads `errors` and `state`) must not pay for jsonschema and jmespath.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from treadle.domain.compile import (
        CompiledTask,
        RetryPolicy,
        Workflow,
        compile_workflow,
        definition_digest,
        parse_definition,
        validate_input,
    )
    from treadle.domain.decider import decide, new_run
    from treadle.domain.durations import parse_duration
    from treadle.domain.expressions import Template, compile_template

__all__ = [
    "CompiledTask",
    "RetryPolicy",
    "Template",
    "Workflow",
    "compile_template",
    "compile_workflow",
    "decide",
    "definition_digest",
    "new_run",
    "parse_definition",
    "parse_duration",
    "validate_input",
]

_LAZY = {
    **dict.fromkeys(
        (
            "CompiledTask",
            "RetryPolicy",
            "Workflow",
            "compile_workflow",
            "definition_digest",
            "parse_definition",
            "validate_input",
        ),
        "treadle.domain.compile",
    ),
    "decide": "treadle.domain.decider",
    "new_run": "treadle.domain.decider",
    "parse_duration": "treadle.domain.durations",
    "Template": "treadle.domain.expressions",
    "compile_template": "treadle.domain.expressions",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415 -- lazy by design, see the module docstring

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
