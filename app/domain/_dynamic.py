"""Dynamic values: task fields written as expressions, evaluated when the task is ready.

A sleep's `duration` or `until`, a signal task's `timeout`, the `retry` fields and a map's
`concurrency` may be `${ expr }` (or a string with one inside, like `"${ input.s }s"`).
They are compiled with the definition and evaluated against the run's context when the
task becomes ready; a value of the wrong type fails the task, with the field in the
message. The retry fields are evaluated again when an attempt fails: the run state keeps
no copy, and what they read (the input, finished tasks) does not change in between.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from treadle.domain.durations import parse_duration
from treadle.domain.errors import DynamicValueInvalid, ExpressionError
from treadle.domain.expressions import Template, has_expression
from treadle.domain.limits import Limits


@dataclass(frozen=True, kw_only=True)
class Dynamic:
    """The fields of one task that are expressions; None where the value is fixed."""

    duration: Template | None = None
    until: Template | None = None
    timeout: Template | None = None
    max_attempts: Template | None = None
    initial_interval: Template | None = None
    backoff: Template | None = None
    max_interval: Template | None = None
    concurrency: Template | None = None

    @property
    def retry_fields(self) -> dict[str, Template]:
        """The retry fields that are expressions, by name."""
        fields = {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff": self.backoff,
            "max_interval": self.max_interval,
        }
        return {name: template for name, template in fields.items() if template is not None}


def is_dynamic(value: Any) -> bool:
    """Whether a field's value is (or holds) an expression rather than a fixed value."""
    return has_expression(value)


# --- evaluation ---------------------------------------------------------------------


def _evaluate(template: Template, field: str, context: Mapping[Any, Any]) -> Any:
    try:
        return template.render(context)
    except ExpressionError as exc:
        raise DynamicValueInvalid(field, str(exc)) from None


def seconds(
    template: Template, field: str, context: Mapping[Any, Any], *, allow_zero: bool = False
) -> float:
    """A duration field's value in seconds: a number or a duration text like `30s`."""
    value = _evaluate(template, field, context)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise DynamicValueInvalid(field, f"{_shown(value)} is not a duration")
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise DynamicValueInvalid(field, str(exc)) from None
    if result == 0 and not allow_zero:
        raise DynamicValueInvalid(field, "must be longer than zero")
    return result


def moment(template: Template, field: str, context: Mapping[Any, Any]) -> datetime:
    """An `until` field's value: an RFC 3339 time with an offset, in UTC."""
    value = _evaluate(template, field, context)
    parsed = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        reason = f"{_shown(value)} is not an RFC 3339 time with an offset"
        raise DynamicValueInvalid(field, reason)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise DynamicValueInvalid(field, f"{value!r} is outside years 1 to 9999") from None


def whole_number(
    template: Template, field: str, context: Mapping[Any, Any], *, least: int, most: int | None
) -> int:
    """An integer field's value (`3` or `3.0`), within its bounds."""
    value = _evaluate(template, field, context)
    integral = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not integral:
        raise DynamicValueInvalid(field, f"{_shown(value)} is not a whole number")
    number = int(value)
    if number < least:
        raise DynamicValueInvalid(field, f"{number} is less than {least}")
    if most is not None and number > most:
        raise DynamicValueInvalid(field, f"{number} is more than {most} (limits.max_attempts)")
    return number


def factor(template: Template, field: str, context: Mapping[Any, Any]) -> float:
    value = _evaluate(template, field, context)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DynamicValueInvalid(field, f"{_shown(value)} is not a number")
    if value < 1:
        raise DynamicValueInvalid(field, f"{value} is less than 1")
    return float(value)


def interval(template: Template, field: str, context: Mapping[Any, Any], limits: Limits) -> float:
    value = seconds(template, field, context)
    shortest = limits.min_retry_interval_seconds
    if value < shortest:
        message = f"{value:g}s is shorter than {shortest:g}s (limits.min_retry_interval_seconds)"
        raise DynamicValueInvalid(field, message)
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    kind = {dict: "an object", list: "a list", type(None): "null"}.get(type(value))
    if kind is not None:
        return kind
    return text if len(text) <= 60 else text[:57] + "..."
