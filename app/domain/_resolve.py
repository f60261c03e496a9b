"""Evaluating a task's dynamic values (see `treadle.domain._dynamic`) when it is ready."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from treadle.domain import _dynamic as dynamic
from treadle.domain._dynamic import Dynamic
from treadle.domain._task_rules import CompiledTask, RetryPolicy
from treadle.domain.expressions import Template
from treadle.domain.limits import Limits


def retry_policy(
    policy: RetryPolicy,
    values: Dynamic | None,
    context: Mapping[Any, Any],
    limits: Limits,
    *,
    path: str = "retry",
) -> RetryPolicy:
    """The task's retry policy with its expression fields evaluated; DynamicValueInvalid."""
    if values is None or not values.retry_fields:
        return policy
    changes: dict[str, Any] = {}
    readers: dict[str, Callable[[Template, str], Any]] = {
        "max_attempts": lambda t, f: dynamic.whole_number(
            t, f, context, least=1, most=limits.max_attempts
        ),
        "initial_interval": lambda t, f: dynamic.interval(t, f, context, limits),
        "backoff": lambda t, f: dynamic.factor(t, f, context),
        "max_interval": lambda t, f: dynamic.interval(t, f, context, limits),
    }
    for name, template in values.retry_fields.items():
        changes[name] = readers[name](template, f"{path}.{name}")
    return replace(policy, **changes)


def resolved(
    compiled: CompiledTask, context: Mapping[Any, Any], limits: Limits, path: str
) -> CompiledTask:
    """The task as it starts: each expression field evaluated into its fixed counterpart.

    The retry fields are checked here too (so a bad one fails the task before its first
    attempt), and evaluated again when an attempt fails. Raises DynamicValueInvalid.
    """
    values = compiled.dynamic
    template = compiled.map_task
    if template is not None and template.dynamic is not None:
        retry_policy(template.retry, template.dynamic, context, limits, path=f"{path}.task.retry")
    if values is None:
        return compiled
    retry_policy(compiled.retry, values, context, limits, path=f"{path}.retry")
    changes: dict[str, Any] = {}
    if values.duration is not None:
        field = f"{path}.duration"
        changes["sleep_seconds"] = dynamic.seconds(values.duration, field, context, allow_zero=True)
    if values.until is not None:
        changes["sleep_until"] = dynamic.moment(values.until, f"{path}.until", context)
    if values.timeout is not None:
        changes["timeout_seconds"] = dynamic.seconds(values.timeout, f"{path}.timeout", context)
    if values.concurrency is not None:
        field = f"{path}.concurrency"
        changes["concurrency"] = dynamic.whole_number(
            values.concurrency, field, context, least=1, most=None
        )
    return replace(compiled, **changes)
