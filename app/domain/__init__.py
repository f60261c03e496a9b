"""The pure model of Treadle: definitions, expressions, state and the decider. No I/O."""

from app.domain.compile import (
    CompiledTask,
    RetryPolicy,
    Workflow,
    compile_workflow,
    definition_digest,
    parse_definition,
    validate_input,
)
from app.domain.decider import decide, new_run
from app.domain.durations import parse_duration
from app.domain.expressions import Template, compile_template

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
