"""The compiled form of one task, and the rules each task of a definition must follow.

Every check appends a `ValidationIssue` instead of raising, so a definition with
several mistakes gets all of them back at once.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any

import msgspec

from treadle.domain._dynamic import Dynamic, is_dynamic
from treadle.domain.definitions import (
    Duration,
    HttpRequestDefinition,
    TaskDefinition,
)
from treadle.domain.durations import parse_duration
from treadle.domain.errors import ValidationIssue
from treadle.domain.expressions import (
    Template,
    check_template,
    expression_source,
    has_expression,
    with_literal_fields,
)
from treadle.domain.limits import NAME_CHARS, TASK_ID_CHARS, Limits
from treadle.domain.secrets import secret_paths

_URL_SAFE = re.compile(r"[A-Za-z0-9_.-]+")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")

# Fields that belong to one task type; on a task of another type they are a mistake.
_OWN_FIELDS: dict[str, tuple[str, ...]] = {
    "handler": ("handler",),
    "http": ("request", "expect", "retry_on"),
    "sleep": ("duration", "until"),
    "signal": ("signal",),
    "map": ("items", "task", "concurrency", "on_failure"),
    "workflow": ("workflow", "version"),
    "switch": ("cases", "default"),
}
# Fields several types share, and the types they apply to.
_SHARED_FIELDS: dict[str, frozenset[str]] = {
    "input": frozenset({"handler", "workflow"}),
    "retry": frozenset({"handler", "http"}),
    "timeout": frozenset({"handler", "http", "signal", "map", "workflow"}),
    "schedule_to_start_timeout": frozenset({"handler", "http"}),
    "heartbeat_timeout": frozenset({"handler"}),  # only handler code can heartbeat
    "queue": frozenset({"handler", "http"}),
}
_DEFAULTS = {f.name: f.default for f in msgspec.structs.fields(TaskDefinition)}


@dataclass(frozen=True, kw_only=True)
class _Scope:
    """What every per-type rule needs besides the task: the graph, defaults, the issues."""

    known: set[str]
    default_timeout: float
    issues: list[ValidationIssue]
    limits: Limits
    default_schedule_to_start: float | None = None
    dynamic: dict[str, Template] = dataclass_field(default_factory=dict)
    """The task's fields written as expressions (see `treadle.domain._dynamic`)."""

    def template(
        self, value: Any, path: str, *, allow_secrets: bool = False
    ) -> tuple[Template | None, list[ValidationIssue]]:
        """Compile a value under the configured expression limits and the known task ids."""
        return check_template(
            value,
            path,
            allow_secrets=allow_secrets,
            max_bytes=self.limits.max_expression_bytes,
            tasks=self.known,
            max_cost=self.limits.max_expression_cost,
        )

    def dynamic_value(self, name: str, value: Any, path: str) -> None:
        """Compile a field written as an expression into `dynamic` (or report it)."""
        template, found = self.template(value, path)
        self.issues.extend(found)
        if template is not None:
            self.dynamic[name] = template


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How failed attempts are retried, with every interval in seconds."""

    max_attempts: int = 1
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    non_retryable: frozenset[str] = frozenset()

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt `failed_attempt` failed: exponential, capped."""
        try:
            wait = self.initial_interval * self.backoff ** (failed_attempt - 1)
        except OverflowError:  # a huge attempt number; the cap applies anyway
            return self.max_interval
        return min(wait, self.max_interval)


@dataclass(frozen=True, kw_only=True, eq=False)
class CompiledTask:
    """One task, checked and compiled; the fields that do not apply to its type are None.

    For an `http` task, `request` renders to the attempt's input: a dict with `method`,
    `url`, and (when set) `headers`, `query`, `json`, `form`, `timeout` (seconds),
    `expect` (the accepted status codes), `retry_on` (extra retryable codes) and `secrets`
    (the paths where the definition wrote `${ secret.NAME }`; see treadle.domain.secrets).
    """

    id: str
    type: str
    deps: tuple[str, ...]
    queue: str
    handler: str | None
    input: Template
    when: Template | None
    retry: RetryPolicy
    timeout_seconds: float | None
    """Per attempt for handler/http (the task's or the default); optional for the rest."""
    schedule_to_start_seconds: float | None = None
    """handler/http: how long a dispatched attempt may wait unstarted before it is sent
    again (the task's or the default); None: never (the default default)."""
    heartbeat_timeout_seconds: float | None = None
    """handler: the longest a running attempt may go without a heartbeat; None: no limit."""
    request: Template | None = None
    sleep_seconds: float | None = None
    sleep_until: datetime | None = None
    signal: str | None = None
    """The signal name a `signal` task waits for (the task id unless set)."""
    items: Template | None = None
    map_task: CompiledTask | None = None
    concurrency: int | None = None
    on_failure: str = "fail_fast"
    child_workflow: str | None = None
    child_version: int | None = None
    join: str = "all_success"
    """The trigger rule over `deps` (see `JoinRule`); the gating switches are not counted."""
    cases: tuple[SwitchBranch, ...] = ()
    """A `switch` task's cases, in order."""
    default_targets: tuple[str, ...] = ()
    """A `switch` task's tasks to run when no case holds."""
    switches: tuple[str, ...] = ()
    """The switch tasks that name this task: it runs only if each of them chose it."""
    dynamic: Dynamic | None = None
    """The fields written as expressions, evaluated when the task is ready."""

    @property
    def signal_may_time_out(self) -> bool:
        """Whether a `signal` task arms a timeout timer (a fixed or an expression timeout)."""
        return self.timeout_seconds is not None or (
            self.dynamic is not None and self.dynamic.timeout is not None
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class SwitchBranch:
    """One case of a switch: its condition and the tasks it runs."""

    when: Template
    then: tuple[str, ...]


def switch_targets(task: TaskDefinition) -> list[str]:
    """Every task a switch names (in its cases and its default), once each."""
    if task.type != "switch":
        return []
    named = [target for case in task.cases or [] for target in case.then]
    return list(dict.fromkeys([*named, *(task.default or [])]))


def compile_task(
    task_id: str,
    task: TaskDefinition,
    *,
    path: str,
    known: set[str],
    default_timeout: float,
    issues: list[ValidationIssue],
    in_map: bool = False,
    limits: Limits | None = None,
    default_schedule_to_start: float | None = None,
) -> CompiledTask | None:
    """Check one task against every rule; the compiled task, or None if it has issues."""
    limits = limits or Limits()
    before = len(issues)
    if not in_map:
        check_name(task_id, path, "task id", issues, most=TASK_ID_CHARS)
    check_name(task.queue, f"{path}.queue", "queue name", issues)
    _check_applicable(task, path, issues)
    if in_map and task.join != "all_success":
        issues.append(
            ValidationIssue(path=f"{path}.join", message="not allowed on the task of a map")
        )
    deps = _check_after(
        task_id, after=task.after, path=path, known=known, in_map=in_map, issues=issues
    )
    scope = _Scope(
        known=known,
        default_timeout=default_timeout,
        issues=issues,
        limits=limits,
        default_schedule_to_start=default_schedule_to_start,
    )
    when = _check_when(task.when, f"{path}.when", scope)
    task_input, input_issues = scope.template(task.input, f"{path}.input")
    issues.extend(input_issues)
    retry = _retry_policy(task, f"{path}.retry", scope)
    timeout, wait = _attempt_limits(task, path, scope)
    heartbeat = optional_seconds(task.heartbeat_timeout, f"{path}.heartbeat_timeout", issues)
    specific = _TYPE_RULES[task.type](task_id, task, path, scope)
    if len(issues) > before or task_input is None:
        return None
    return CompiledTask(
        id=task_id,
        type=task.type,
        deps=deps,
        queue=task.queue,
        handler=task.handler,
        input=task_input,
        when=when,
        retry=retry,
        timeout_seconds=timeout,
        schedule_to_start_seconds=wait,
        heartbeat_timeout_seconds=heartbeat,
        join=task.join,
        dynamic=Dynamic(**scope.dynamic) if scope.dynamic else None,
        **specific,
    )


# --- common rules -------------------------------------------------------------------


def check_name(
    value: str, path: str, what: str, issues: list[ValidationIssue], *, most: int = NAME_CHARS
) -> None:
    """Names end up in URLs and broker channels, so they keep to [A-Za-z0-9_.-], and in
    the store's columns, so they keep to `most` characters."""
    if not value:
        issues.append(ValidationIssue(path=path, message=f"the {what} is empty"))
    elif len(value) > most:
        message = f"the {what} is {len(value)} characters long; at most {most} are allowed"
        issues.append(ValidationIssue(path=path, message=message))
    elif not _URL_SAFE.fullmatch(value):
        message = f"the {what} {value!r} may only use letters, digits, '_', '.' and '-'"
        issues.append(ValidationIssue(path=path, message=message))


def optional_seconds(
    value: Duration | None, path: str, issues: list[ValidationIssue], *, allow_zero: bool = False
) -> float | None:
    """The duration in seconds, or None if unset; a bad or non-positive value is an issue."""
    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        issues.append(ValidationIssue(path=path, message=str(exc)))
        return None
    if seconds == 0 and not allow_zero:
        issues.append(ValidationIssue(path=path, message="must be longer than zero"))
        return None
    return seconds


def _attempt_limits(
    task: TaskDefinition, path: str, scope: _Scope
) -> tuple[float | None, float | None]:
    """Start-to-close and schedule-to-start seconds; handler/http fall back to defaults."""
    timeout = _timeout_seconds(task, path, scope)
    wait = optional_seconds(
        task.schedule_to_start_timeout, f"{path}.schedule_to_start_timeout", scope.issues
    )
    if task.type in ("handler", "http"):
        timeout = scope.default_timeout if timeout is None else timeout
        wait = scope.default_schedule_to_start if wait is None else wait
    return timeout, wait


def _timeout_seconds(task: TaskDefinition, path: str, scope: _Scope) -> float | None:
    if not is_dynamic(task.timeout):
        return optional_seconds(task.timeout, f"{path}.timeout", scope.issues)
    if task.type == "signal":
        scope.dynamic_value("timeout", task.timeout, f"{path}.timeout")
    else:
        message = "an expression is only allowed in a signal task's timeout"
        scope.issues.append(ValidationIssue(path=f"{path}.timeout", message=message))
    return None


def _check_applicable(task: TaskDefinition, path: str, issues: list[ValidationIssue]) -> None:
    misplaced = [
        name
        for kind, names in _OWN_FIELDS.items()
        if kind != task.type
        for name in names
        if getattr(task, name) != _DEFAULTS[name]
    ]
    misplaced += [
        name
        for name, kinds in _SHARED_FIELDS.items()
        if task.type not in kinds and getattr(task, name) != _DEFAULTS[name]
    ]
    message = f"not allowed on a {task.type} task"
    issues.extend(ValidationIssue(path=f"{path}.{name}", message=message) for name in misplaced)


def _check_after(
    task_id: str,
    *,
    after: list[str],
    path: str,
    known: set[str],
    in_map: bool,
    issues: list[ValidationIssue],
) -> tuple[str, ...]:
    if in_map and after:
        issues.append(
            ValidationIssue(path=f"{path}.after", message="not allowed on the task of a map")
        )
        return ()
    for index, dep in enumerate(after):
        where = f"{path}.after[{index}]"
        if dep == task_id:
            issues.append(ValidationIssue(path=where, message="a task cannot depend on itself"))
        elif dep not in known:
            issues.append(ValidationIssue(path=where, message=f"unknown task {dep!r}"))
    return tuple(dict.fromkeys(after))


def _check_when(value: str | None, path: str, scope: _Scope) -> Template | None:
    if value is None:
        return None
    if expression_source(value) is None:
        message = "must be an expression written as ${ ... }"
        scope.issues.append(ValidationIssue(path=path, message=message))
        return None
    template, found = scope.template(value, path)
    scope.issues.extend(found)
    return template


HTTP_DEFAULT_RETRY = RetryPolicy(
    max_attempts=3, initial_interval=1.0, backoff=2.0, max_interval=30.0
)
"""An http task without a `retry` block retries what the worker marks retryable (5xx, 429,
timeouts, connection errors) this way: callers of HTTP services expect a blip to pass."""


def _retry_policy(task: TaskDefinition, path: str, scope: _Scope) -> RetryPolicy:
    """The fixed policy; a field written as an expression keeps its default here and is
    put in `scope.dynamic`, to be evaluated when the task is ready."""
    retry, issues, limits = task.retry, scope.issues, scope.limits
    if retry is None:
        return HTTP_DEFAULT_RETRY if task.type == "http" else RetryPolicy()
    max_attempts = _fixed_number(retry.max_attempts, f"{path}.max_attempts", "max_attempts", scope)
    if max_attempts is not None and max_attempts < 1:
        issues.append(ValidationIssue(path=f"{path}.max_attempts", message="must be at least 1"))
    elif max_attempts is not None and max_attempts > limits.max_attempts:
        message = f"must be at most {limits.max_attempts} (limits.max_attempts)"
        issues.append(ValidationIssue(path=f"{path}.max_attempts", message=message))
    backoff = _fixed_number(retry.backoff, f"{path}.backoff", "backoff", scope)
    if backoff is not None and backoff < 1:
        issues.append(ValidationIssue(path=f"{path}.backoff", message="must be at least 1"))
    intervals = {}
    for name in ("initial_interval", "max_interval"):
        value, where = getattr(retry, name), f"{path}.{name}"
        if is_dynamic(value):
            scope.dynamic_value(name, value, where)
        else:
            intervals[name] = _retry_interval(value, where, issues, limits)
    return RetryPolicy(
        max_attempts=max(int(max_attempts or 1), 1),
        initial_interval=intervals.get("initial_interval") or 1.0,
        backoff=max(backoff or 2.0, 1.0),
        max_interval=intervals.get("max_interval") or 60.0,
        non_retryable=frozenset(retry.non_retryable),
    )


def _fixed_number(value: float | str, path: str, name: str, scope: _Scope) -> float | None:
    """A numeric field's fixed value; None when it is an expression (or not a number)."""
    if isinstance(value, str):
        if is_dynamic(value):
            scope.dynamic_value(name, value, path)
        else:
            message = "must be a number or an expression written as ${ ... }"
            scope.issues.append(ValidationIssue(path=path, message=message))
        return None
    return value


def _retry_interval(
    value: Duration, path: str, issues: list[ValidationIssue], limits: Limits
) -> float | None:
    # A wait shorter than the floor turns a retry policy into a busy loop writing history.
    seconds = optional_seconds(value, path, issues)
    shortest = limits.min_retry_interval_seconds
    if seconds is not None and seconds < shortest:
        message = f"must be at least {shortest:g}s (limits.min_retry_interval_seconds)"
        issues.append(ValidationIssue(path=path, message=message))
        return None
    return seconds


# --- rules by task type -------------------------------------------------------------


def _handler_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    if not task.handler:
        issues.append(
            ValidationIssue(path=f"{path}.handler", message="required for a handler task")
        )
    return {}


def _http_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    request = task.request
    if request is None:
        issues.append(ValidationIssue(path=f"{path}.request", message="required for an http task"))
        return {}
    where = f"{path}.request"
    _check_url(request.url, f"{where}.url", issues)
    method = request.method.upper()
    if method not in HTTP_METHODS:
        message = f"{request.method!r} is not one of {', '.join(HTTP_METHODS)}"
        issues.append(ValidationIssue(path=f"{where}.method", message=message))
    timeout = optional_seconds(request.timeout, f"{where}.timeout", issues)
    for field in ("expect", "retry_on"):
        for index, status in enumerate(getattr(task, field) or []):
            if not 100 <= status <= 599:
                message = f"{status} is not an HTTP status code"
                issues.append(ValidationIssue(path=f"{path}.{field}[{index}]", message=message))
    value = _request_value(request, method, timeout, task)
    template, found = scope.template(value, where, allow_secrets=True)
    issues.extend(found)
    if template is None:
        return {}
    # Kept out of the template: a path is data, never an expression to evaluate.
    paths = secret_paths(value)
    return {"request": with_literal_fields(template, {"secrets": paths}) if paths else template}


def _check_url(url: Any, path: str, issues: list[ValidationIssue]) -> None:
    if url is None:
        issues.append(ValidationIssue(path=path, message="required"))
    elif not has_expression(url) and not (
        isinstance(url, str) and url.startswith(("http://", "https://"))
    ):
        message = "must be an http:// or https:// URL or an expression"
        issues.append(ValidationIssue(path=path, message=message))


def _request_value(
    request: HttpRequestDefinition, method: str, timeout: float | None, task: TaskDefinition
) -> dict[str, Any]:
    value: dict[str, Any] = {"method": method, "url": request.url}
    optional = {
        "headers": request.headers,
        "query": request.query,
        "json": request.json,
        "form": request.form,
        "timeout": timeout,
        "expect": task.expect,
        "retry_on": task.retry_on,
    }
    value.update({key: item for key, item in optional.items() if item is not None})
    return value


def _sleep_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    if (task.duration is None) == (task.until is None):
        message = "a sleep task needs exactly one of duration and until"
        issues.append(ValidationIssue(path=path, message=message))
        return {}
    if is_dynamic(task.duration):
        scope.dynamic_value("duration", task.duration, f"{path}.duration")
        return {}
    if is_dynamic(task.until):
        scope.dynamic_value("until", task.until, f"{path}.until")
        return {}
    if task.duration is not None:
        seconds = optional_seconds(task.duration, f"{path}.duration", issues, allow_zero=True)
        return {"sleep_seconds": seconds}
    return {"sleep_until": _rfc3339(str(task.until), f"{path}.until", issues)}


def _rfc3339(value: str, path: str, issues: list[ValidationIssue]) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        message = f"{value!r} is not an RFC 3339 time with an offset (e.g. 2030-01-01T00:00:00Z)"
        issues.append(ValidationIssue(path=path, message=message))
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:59:59-14:00: no instant the store can keep
        message = f"{value!r} is outside years 1 to 9999 once taken to UTC"
        issues.append(ValidationIssue(path=path, message=message))
        return None


def _signal_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    if task.signal is not None:
        check_name(task.signal, f"{path}.signal", "signal name", issues)
    return {"signal": task.signal or task_id}


def _map_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    items: Template | None = None
    if task.items is None:
        issues.append(ValidationIssue(path=f"{path}.items", message="required for a map task"))
    else:
        items, found = scope.template(task.items, f"{path}.items")
        issues.extend(found)
    template_task = None
    if task.task is None:
        issues.append(ValidationIssue(path=f"{path}.task", message="required for a map task"))
    else:
        template_task = compile_task(
            task_id,
            task.task,
            path=f"{path}.task",
            known=scope.known,
            default_timeout=scope.default_timeout,
            issues=issues,
            in_map=True,
            limits=scope.limits,
            default_schedule_to_start=scope.default_schedule_to_start,
        )
    if task.task is not None and task.task.type not in ("handler", "http"):
        # Items are attempts a worker runs; timers, signals and children are not.
        message = f"a map fans out handler or http tasks, not {task.task.type} tasks"
        issues.append(ValidationIssue(path=f"{path}.task.type", message=message))
    if task.task is not None and task.task.when is not None:
        issues.append(ValidationIssue(path=f"{path}.task.when", message="not allowed in a map"))
    concurrency = task.concurrency
    if isinstance(concurrency, str):
        if is_dynamic(concurrency):
            scope.dynamic_value("concurrency", concurrency, f"{path}.concurrency")
        else:
            message = "must be a number or an expression written as ${ ... }"
            issues.append(ValidationIssue(path=f"{path}.concurrency", message=message))
        concurrency = None
    elif concurrency is not None and concurrency < 1:
        issues.append(ValidationIssue(path=f"{path}.concurrency", message="must be at least 1"))
    return {
        "items": items,
        "map_task": template_task,
        "concurrency": concurrency,
        "on_failure": task.on_failure,
    }


def _workflow_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    issues = scope.issues
    if task.workflow is None:
        message = "required for a workflow task"
        issues.append(ValidationIssue(path=f"{path}.workflow", message=message))
    else:
        check_name(task.workflow, f"{path}.workflow", "workflow name", issues)
    if task.version is not None and task.version < 1:
        issues.append(ValidationIssue(path=f"{path}.version", message="must be at least 1"))
    return {"child_workflow": task.workflow, "child_version": task.version}


def _switch_rules(task_id: str, task: TaskDefinition, path: str, scope: _Scope) -> dict[str, Any]:
    if not task.cases:
        message = "a switch needs at least one case"
        scope.issues.append(ValidationIssue(path=f"{path}.cases", message=message))
        return {}
    branches = []
    for index, case in enumerate(task.cases):
        where = f"{path}.cases[{index}]"
        when = _check_when(case.when, f"{where}.when", scope)
        then = _check_targets(task_id, case.then, f"{where}.then", scope)
        if when is not None:
            branches.append(SwitchBranch(when=when, then=then))
    default = _check_targets(task_id, task.default or [], f"{path}.default", scope)
    return {"cases": tuple(branches), "default_targets": default}


def _check_targets(task_id: str, targets: list[str], path: str, scope: _Scope) -> tuple[str, ...]:
    seen: set[str] = set()
    for index, target in enumerate(targets):
        where = f"{path}[{index}]"
        if target == task_id:
            message = "a switch cannot name itself"
            scope.issues.append(ValidationIssue(path=where, message=message))
        elif target not in scope.known:
            scope.issues.append(ValidationIssue(path=where, message=f"unknown task {target!r}"))
        elif target in seen:
            scope.issues.append(ValidationIssue(path=where, message=f"{target!r} is named twice"))
        seen.add(target)
    return tuple(dict.fromkeys(targets))


_TYPE_RULES: dict[str, Callable[[str, TaskDefinition, str, _Scope], dict[str, Any]]] = {
    "handler": _handler_rules,
    "http": _http_rules,
    "sleep": _sleep_rules,
    "signal": _signal_rules,
    "map": _map_rules,
    "workflow": _workflow_rules,
    "switch": _switch_rules,
}


# --- the graph ----------------------------------------------------------------------


def _edges(tasks: Mapping[str, TaskDefinition]) -> dict[str, list[str]]:
    """Each task's valid dependencies (unknown and self references are reported elsewhere),
    with the switches that name it: it waits for them as for its `after`."""
    edges = {
        task_id: [dep for dep in dict.fromkeys(task.after) if dep in tasks and dep != task_id]
        for task_id, task in tasks.items()
    }
    for switch_id, task in tasks.items():
        for target in switch_targets(task):
            if target in edges and target != switch_id and switch_id not in edges[target]:
                edges[target].append(switch_id)
    return edges


def find_cycles(tasks: Mapping[str, TaskDefinition]) -> list[list[str]]:
    """Each dependency cycle once, as the chain of tasks that wait on each other."""
    edges = _edges(tasks)
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    cycles: list[list[str]] = []
    seen: set[frozenset[str]] = set()
    for root in edges:
        if root in state:
            continue
        # Iterative depth-first search, so a long chain cannot hit the recursion limit.
        path: list[str] = [root]
        stack = [iter(edges[root])]
        state[root] = 1
        while stack:
            dep = next(stack[-1], None)
            if dep is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(dep) == 1:
                cycle = path[path.index(dep) :]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle)
            elif dep not in state:
                state[dep] = 1
                path.append(dep)
                stack.append(iter(edges[dep]))
    return cycles


def topological_order(tasks: Mapping[str, TaskDefinition]) -> tuple[str, ...]:
    """Dependencies before dependents; among ready tasks, the definition's order."""
    edges = _edges(tasks)
    rank = {task_id: index for index, task_id in enumerate(tasks)}
    waiting = {task_id: len(deps) for task_id, deps in edges.items()}
    dependents: dict[str, list[str]] = {task_id: [] for task_id in tasks}
    for task_id, deps in edges.items():
        for dep in deps:
            dependents[dep].append(task_id)
    ready = [rank[task_id] for task_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    names = list(tasks)
    order: list[str] = []
    while ready:
        task_id = names[heapq.heappop(ready)]
        order.append(task_id)
        for dependent in dependents[task_id]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, rank[dependent])
    return tuple(order)
