"""Define workflows in Python, beside their handlers; the result is the same definition as YAML.

    from treadle.builder import Retry, Workflow

    wf = Workflow("order", input_schema={"type": "object", "required": ["sku"]})
    reserve = wf.task("reserve", handler="inventory.reserve", input={"sku": wf.input.sku})
    charge = wf.task(
        "charge",
        handler="payments.charge",
        after=[reserve],
        input=reserve.output,
        retry=Retry(max_attempts=5, initial_interval="1s"),
    )
    wf.task("ship", handler="shipping.create", after=[charge],
            when=charge.output.status == "ok")
    wf.output({"charge": charge.output})
    route = wf.switch("route", cases=[(wf.input.kind == "gift", ["wrap"])], default=["post"])
    wf.task("receipt", handler="mail.receipt", after=["wrap", "post"], join="none_failed",
            input={"subject": f"Order {wf.input.id}"})   # "Order ${ input.id }"

`wf.input.sku` renders as "${ input.sku }" and `reserve.output.id` as
"${ tasks.reserve.output.id }"; `wf.to_definition()` is the dict the YAML form parses to,
which `treadle workflow apply mypkg.workflows:wf` registers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Expr", "Ref", "Retry", "TaskRef", "Workflow", "expr"]


@dataclass(frozen=True, eq=False)
class Expr:
    """A JMESPath expression; in a definition it becomes the string "${ <text> }"."""

    text: str

    def render(self) -> str:
        return f"${{ {self.text} }}"

    def __format__(self, spec: str) -> str:
        # In an f-string it becomes a placeholder: f"https://x/{wf.input.id}" interpolates.
        return self.render()


class Ref(Expr):
    """A path into what expressions see (`input`, `tasks.<id>.output`); `.x` goes deeper.

    `ref == value` and `ref != value` build comparison expressions (for `when`).
    """

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        return Ref(f"{self.text}.{name}")

    def __getitem__(self, key: str | int) -> Ref:
        if isinstance(key, int):
            return Ref(f"{self.text}[{key}]")
        return Ref(f"{self.text}.{json.dumps(key)}")

    def __eq__(self, other: object) -> Expr:  # type: ignore[override]
        return Expr(f"{self.text} == {_literal(other)}")

    def __ne__(self, other: object) -> Expr:  # type: ignore[override]
        return Expr(f"{self.text} != {_literal(other)}")

    __hash__ = None  # type: ignore[assignment]  # == builds an expression, so no hashing


def expr(text: str) -> Expr:
    """Any JMESPath expression, written out (e.g. `expr("length(input.items) > `0`")`)."""
    return Expr(text)


def _literal(value: object) -> str:
    if isinstance(value, Expr):
        return value.text
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"`{json.dumps(value)}`"


@dataclass(frozen=True)
class Retry:
    """A retry policy; unset fields take the engine's defaults."""

    max_attempts: int | Expr | None = None
    initial_interval: str | float | Expr | None = None
    backoff: float | Expr | None = None
    max_interval: str | float | Expr | None = None
    non_retryable: list[str] | None = None

    def to_definition(self) -> dict[str, Any]:
        fields = {
            "max_attempts": self.max_attempts,
            "initial_interval": self.initial_interval,
            "backoff": self.backoff,
            "max_interval": self.max_interval,
            "non_retryable": self.non_retryable,
        }
        return {k: v for k, v in fields.items() if v is not None}


class TaskRef:
    """A task added to a workflow; `.output` and `.status` reference it in expressions."""

    def __init__(self, task_id: str) -> None:
        self.id = task_id
        self.output = Ref(f"tasks.{task_id}.output")
        self.status = Ref(f"tasks.{task_id}.status")


class Workflow:
    """A workflow definition built in code."""

    def __init__(
        self,
        name: str,
        *,
        description: str | None = None,
        input_schema: Mapping[str, Any] | None = None,
        timeout: str | float | None = None,
    ) -> None:
        self.name = name
        self.input = Ref("input")
        self.run = Ref("run")
        self._top: dict[str, Any] = {
            "description": description,
            "input_schema": dict(input_schema) if input_schema is not None else None,
            "timeout": timeout,
        }
        self._tasks: dict[str, dict[str, Any]] = {}
        self._output: Any = None

    def task(
        self,
        task_id: str,
        *,
        handler: str | None = None,
        after: Iterable[TaskRef | str] = (),
        input: Any = None,
        retry: Retry | None = None,
        timeout: str | float | None = None,
        when: Expr | None = None,
        queue: str | None = None,
        type: str | None = None,
        **fields: Any,
    ) -> TaskRef:
        """Add a task; other task fields (`duration`, `signal`, `request`...) pass through."""
        if task_id in self._tasks:
            raise ValueError(f"task {task_id!r} is already in workflow {self.name!r}")
        deps = [dep.id if isinstance(dep, TaskRef) else dep for dep in after]
        spec: dict[str, Any] = {
            "type": type,
            "after": deps or None,
            "when": when,
            "handler": handler,
            "input": input,
            "retry": retry.to_definition() if retry is not None else None,
            "timeout": timeout,
            "queue": queue,
            **fields,
        }
        self._tasks[task_id] = {k: v for k, v in spec.items() if v is not None}
        return TaskRef(task_id)

    def switch(
        self,
        task_id: str,
        *,
        cases: Iterable[tuple[Expr, Iterable[TaskRef | str]]],
        default: Iterable[TaskRef | str] = (),
        after: Iterable[TaskRef | str] = (),
    ) -> TaskRef:
        """Add a switch: the first `(when, tasks)` case that holds runs its tasks."""
        branches = [{"when": when, "then": _ids(then)} for when, then in cases]
        fields: dict[str, Any] = {"cases": branches}
        if default:
            fields["default"] = _ids(default)
        return self.task(task_id, type="switch", after=after, **fields)

    def output(self, value: Any) -> None:
        """What the run's output is (expressions allowed)."""
        self._output = value

    def to_definition(self) -> dict[str, Any]:
        """The definition as plain data: what the YAML form of this workflow parses to."""
        top = {k: v for k, v in self._top.items() if v is not None}
        definition: dict[str, Any] = {"name": self.name, **top}
        definition["tasks"] = {tid: _render(spec) for tid, spec in self._tasks.items()}
        if self._output is not None:
            definition["output"] = _render(self._output)
        return definition


def _ids(tasks: Iterable[TaskRef | str]) -> list[str]:
    return [task.id if isinstance(task, TaskRef) else task for task in tasks]


def _render(value: Any) -> Any:
    """Replace every expression in a nested value by its "${ ... }" string."""
    if isinstance(value, Expr):
        return value.render()
    if isinstance(value, TaskRef):
        return value.output.render()
    if isinstance(value, Mapping):
        return {str(k): _render(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render(v) for v in value]
    return value
