"""Validation and compilation of workflow definitions.

`parse_definition` turns JSON (or a dict) into a `WorkflowDefinition`; `compile_workflow`
checks it, collecting every issue with its path (`tasks.charge.after[0]`), and returns
the `Workflow` the decider runs: expressions compiled once, durations in seconds, the
tasks in topological order.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import msgspec
import referencing
import referencing.exceptions
import referencing.jsonschema

from treadle.domain._task_rules import (
    CompiledTask,
    RetryPolicy,
    check_name,
    compile_task,
    find_cycles,
    optional_seconds,
    switch_targets,
    topological_order,
)
from treadle.domain.definitions import SignalsDefinition, TaskDefinition, WorkflowDefinition
from treadle.domain.errors import DefinitionInvalid, InputInvalid, ValidationIssue
from treadle.domain.expressions import Template, check_template
from treadle.domain.limits import Limits

__all__ = [
    "CompiledTask",
    "Limits",
    "RetryPolicy",
    "Workflow",
    "compile_workflow",
    "definition_digest",
    "parse_definition",
    "validate_input",
]


@dataclass(frozen=True, kw_only=True, eq=False)
class Workflow:
    """A validated, compiled workflow definition, ready for the decider."""

    name: str
    definition: WorkflowDefinition
    digest: str
    input_schema: dict[str, Any] | None
    timeout_seconds: float | None
    tasks: Mapping[str, CompiledTask]
    """Every task by id, in the order the definition lists them."""
    order: tuple[str, ...]
    """Task ids in topological order (dependencies first; ties in definition order)."""
    output: Template
    limits: Limits = field(default_factory=Limits)
    """The configured caps the decider applies (map list length, expression size)."""
    signals: frozenset[str] = frozenset()
    """Signal names a run accepts: its `signal` tasks' and `signals.names`."""
    accepts_any_signal: bool = False
    """`signals.accept_any`: a signal of any name is buffered."""
    _input_validator: jsonschema.protocols.Validator | None = field(default=None, repr=False)


# --- parsing ------------------------------------------------------------------------


def parse_definition(data: Mapping[str, Any] | bytes | str) -> WorkflowDefinition:
    """Decode a definition from JSON or a dict; raises DefinitionInvalid with paths."""
    raw = _raw_object(data)
    issues: list[ValidationIssue] = []
    raw_tasks = raw.get("tasks")
    tasks: dict[str, TaskDefinition] = {}
    if isinstance(raw_tasks, dict):
        # msgspec names a dict key `[...]` in its error path; decoding each task on its
        # own keeps the task id in the path (`tasks.charge.after[0]`).
        for task_id, raw_task in raw_tasks.items():
            try:
                tasks[str(task_id)] = msgspec.convert(raw_task, TaskDefinition)
            except msgspec.ValidationError as exc:
                issues.append(_issue_from_msgspec(exc, prefix=f"tasks.{task_id}"))
        raw = {**raw, "tasks": {}}
    try:
        top = msgspec.convert(raw, WorkflowDefinition)
    except msgspec.ValidationError as exc:
        issues.insert(0, _issue_from_msgspec(exc, prefix=""))
    if issues:
        raise DefinitionInvalid(issues)
    return msgspec.structs.replace(top, tasks=tasks) if tasks else top


def _raw_object(data: Mapping[str, Any] | bytes | str) -> dict[str, Any]:
    if isinstance(data, bytes | str):
        try:
            data = msgspec.json.decode(data)
        except msgspec.DecodeError as exc:
            issue = ValidationIssue(path="", message=f"not valid JSON: {exc}")
            raise DefinitionInvalid([issue]) from None
    if not isinstance(data, Mapping):
        got = type(data).__name__
        raise DefinitionInvalid(
            [ValidationIssue(path="", message=f"expected an object, got {got}")]
        )
    return dict(data)


def _issue_from_msgspec(exc: msgspec.ValidationError, *, prefix: str) -> ValidationIssue:
    # msgspec says e.g. "Expected `str`, got `int` - at `$.tasks.a.after[0]`".
    reason, sep, where = str(exc).rpartition(" - at `")
    if not sep:
        reason, where = str(exc), "$"
    path = _join_path(prefix, where.rstrip("`").removeprefix("$").removeprefix("."))
    for marker, message in (
        ("Object contains unknown field `", "unknown field"),
        ("Object missing required field `", "required"),
    ):
        if reason.startswith(marker):
            return ValidationIssue(path=_join_path(path, reason.split("`")[1]), message=message)
    reason = reason.replace("`", "")
    return ValidationIssue(path=path, message=reason[:1].lower() + reason[1:])


def _join_path(path: str, key: str) -> str:
    if not key:
        return path
    if not path or key.startswith("["):
        return f"{path}{key}"
    return f"{path}.{key}"


# --- compiling ----------------------------------------------------------------------


def compile_workflow(
    defn: WorkflowDefinition,
    *,
    default_task_timeout: float = 300.0,
    default_schedule_to_start: float | None = None,
    limits: Limits | None = None,
) -> Workflow:
    """Validate a definition and compile it; raises DefinitionInvalid listing every issue.

    The defaults apply to the handler and http tasks that set no `timeout` or
    `schedule_to_start_timeout` of their own.
    """
    limits = limits or Limits()
    issues: list[ValidationIssue] = []
    check_name(defn.name, "name", "workflow name", issues)
    if not defn.tasks:
        issues.append(ValidationIssue(path="tasks", message="a workflow needs at least one task"))
    if len(defn.tasks) > limits.max_tasks:
        # Refused before compiling: checking a huge graph is the cost the limit avoids.
        count, most = len(defn.tasks), limits.max_tasks
        message = f"{count} tasks is more than the limit of {most} (limits.max_tasks)"
        raise DefinitionInvalid([ValidationIssue(path="tasks", message=message)])
    tasks: dict[str, CompiledTask] = {}
    for task_id, task in defn.tasks.items():
        compiled = compile_task(
            task_id,
            task,
            path=f"tasks.{task_id}",
            known=set(defn.tasks),
            default_timeout=default_task_timeout,
            issues=issues,
            limits=limits,
            default_schedule_to_start=default_schedule_to_start,
        )
        if compiled is not None:
            tasks[task_id] = compiled
    tasks = _gate_switch_targets(defn.tasks, tasks, issues)
    for cycle in find_cycles(defn.tasks):
        chain = " -> ".join([*cycle, cycle[0]])
        issues.append(ValidationIssue(path=f"tasks.{cycle[0]}.after", message=f"cycle {chain}"))
    output, output_issues = check_template(
        defn.output,
        "output",
        max_bytes=limits.max_expression_bytes,
        tasks=defn.tasks,
        max_cost=limits.max_expression_cost,
    )
    issues.extend(output_issues)
    timeout = optional_seconds(defn.timeout, "timeout", issues)
    extra_signals = defn.signals or SignalsDefinition()
    for index, name in enumerate(extra_signals.names):
        check_name(name, f"signals.names[{index}]", "signal name", issues)
    validator = _input_validator(defn.input_schema, issues)
    if issues or output is None:
        raise DefinitionInvalid(issues)
    return Workflow(
        name=defn.name,
        definition=defn,
        digest=definition_digest(defn),
        input_schema=defn.input_schema,
        timeout_seconds=timeout,
        tasks=tasks,
        order=topological_order(defn.tasks),
        output=output,
        limits=limits,
        signals=frozenset(extra_signals.names)
        | {t.signal for t in tasks.values() if t.type == "signal" and t.signal},
        accepts_any_signal=extra_signals.accept_any,
        _input_validator=validator,
    )


def _gate_switch_targets(
    defs: Mapping[str, TaskDefinition],
    tasks: dict[str, CompiledTask],
    issues: list[ValidationIssue],
) -> dict[str, CompiledTask]:
    """Each task a switch names waits for that switch and runs only if it is chosen."""
    gates: dict[str, list[str]] = {}
    for switch_id, task in defs.items():
        for target in switch_targets(task):
            if target in defs and target != switch_id:
                gates.setdefault(target, []).append(switch_id)
    for task_id, task in defs.items():
        if task.join != "all_success" and not task.after:
            message = "a join rule needs the tasks it joins in after"
            issues.append(ValidationIssue(path=f"tasks.{task_id}.join", message=message))
    gated = dict(tasks)
    for target, switches in gates.items():
        compiled = gated.get(target)
        if compiled is None:
            continue
        deps = tuple(dict.fromkeys([*compiled.deps, *switches]))
        gated[target] = dataclasses.replace(compiled, deps=deps, switches=tuple(switches))
    return gated


def _input_validator(
    schema: dict[str, Any] | None, issues: list[ValidationIssue]
) -> jsonschema.protocols.Validator | None:
    if schema is None:
        return None
    # With the format checker, a `pattern` that is no regular expression is an issue here,
    # not a `re.error` when the first run's input is checked.
    meta = jsonschema.Draft202012Validator(
        jsonschema.Draft202012Validator.META_SCHEMA,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    errors = sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    for error in errors:
        path = _schema_path("input_schema", error.absolute_path)
        issues.append(
            ValidationIssue(path=path, message=f"not a valid JSON Schema: {error.message}")
        )
    if errors:
        return None
    before = len(issues)
    issues.extend(_unresolvable_refs(schema))
    validator = jsonschema.Draft202012Validator(
        schema,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
        # An empty registry: a `$ref` to a URL is never fetched (jsonschema's default
        # registry would download it, from wherever it points, while checking an input).
        registry=referencing.Registry(),
    )
    if len(issues) == before and _refers_to_itself_without_end(validator):
        message = "refers to itself without end (a $ref cycle that checks nothing)"
        issues.append(ValidationIssue(path="input_schema", message=message))
    return validator


_DATA_KEYWORDS = frozenset({"const", "default", "enum", "examples"})
"""Keywords whose values are data, not schemas: a `$ref` key inside them is no reference."""
_SPEC_PREFIX = "https://json-schema.org/"
"""Meta-schema references, which jsonschema resolves from its own copies."""


def _unresolvable_refs(schema: dict[str, Any]) -> list[ValidationIssue]:
    """An issue for each `$ref` that points nowhere in the schema (or to another document)."""
    resource = referencing.jsonschema.DRAFT202012.create_resource(schema)
    resolver = referencing.Registry().resolver_with_root(resource)
    issues = []
    for path, ref in _refs(schema, "input_schema"):
        if ref.startswith(_SPEC_PREFIX):
            continue
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            message = (
                f"$ref {ref!r} points nowhere in this schema (other documents are not fetched)"
            )
            issues.append(ValidationIssue(path=path, message=message))
    return issues


def _refs(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, list):
        return [ref for i, item in enumerate(value) for ref in _refs(item, f"{path}[{i}]")]
    if not isinstance(value, dict):
        return []
    found = []
    for key, item in value.items():
        if key == "$ref" and isinstance(item, str):
            found.append((_join_path(path, key), item))
        elif key not in _DATA_KEYWORDS:
            found.extend(_refs(item, _join_path(path, str(key))))
    return found


def _refers_to_itself_without_end(validator: jsonschema.protocols.Validator) -> bool:
    """Whether checking any value recurses for ever (`{"$ref": "#"}`): probed on a few."""
    probes: tuple[Any, ...] = (None, {}, [], "", 0)
    try:
        for probe in probes:
            validator.is_valid(probe)
    except RecursionError:
        return True
    return False


def _schema_path(root: str, parts: Any) -> str:
    path = root
    for part in parts:
        path = f"{path}[{part}]" if isinstance(part, int) else _join_path(path, str(part))
    return path


def definition_digest(defn: WorkflowDefinition) -> str:
    """sha256 hex of the definition's canonical JSON: same content, same digest."""
    builtins = msgspec.to_builtins(defn)
    for later in _LATER_WORKFLOW_FIELDS:  # added later: unset, they leave digests as they were
        if builtins.get(later) is None:
            builtins.pop(later, None)
    for task in builtins.get("tasks", {}).values():
        _drop_unset_later_fields(task)
    canonical = msgspec.json.encode(builtins, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


_LATER_WORKFLOW_FIELDS = ("signals", "tags")
"""Workflow fields added after definitions were first stored (None when unset)."""
_LATER_TASK_FIELDS = {"join": "all_success", "cases": None, "default": None}
"""Task fields added after definitions were first stored, with their unset values."""


def _drop_unset_later_fields(task: dict[str, Any]) -> None:
    # Unset, a field added later leaves the digest of an older definition as it was.
    for name, unset in _LATER_TASK_FIELDS.items():
        if name in task and task[name] == unset:
            del task[name]
    inner = task.get("task")
    if isinstance(inner, dict):
        _drop_unset_later_fields(inner)


def validate_input(workflow: Workflow, value: Any) -> None:
    """Check a run's input against the workflow's input_schema; raises InputInvalid."""
    validator = workflow._input_validator
    if validator is None:
        return
    issues: list[ValidationIssue] = []
    try:
        errors = sorted(validator.iter_errors(value), key=lambda e: list(map(str, e.path)))
    except (RecursionError, referencing.exceptions.Unresolvable) as exc:
        # A cycle only some inputs reach ({"properties": {"a": {"$ref": "#/properties/a"}}}).
        message = f"the workflow's input_schema cannot check this input: {type(exc).__name__}"
        raise InputInvalid([ValidationIssue(path="input", message=message)]) from None
    for error in errors:
        path = _schema_path("input", error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            # Point at the missing property itself, not at the object that lacks it.
            missing = [n for n in _as_list(error.validator_value) if n not in error.instance]
            issues.extend(
                ValidationIssue(path=_join_path(path, str(n)), message="required") for n in missing
            )
            continue
        issues.append(ValidationIssue(path=path, message=error.message))
    if issues:
        raise InputInvalid(_unique(issues))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _unique(issues: list[ValidationIssue]) -> list[ValidationIssue]:
    seen: set[tuple[str, str]] = set()
    out = []
    for issue in issues:
        if (issue.path, issue.message) not in seen:
            seen.add((issue.path, issue.message))
            out.append(issue)
    return out
