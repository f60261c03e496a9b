"""JMESPath evaluation that refuses to build a value larger than a limit.

A short expression can build a huge value: each `[@, @]` or `join('', [@, @])` doubles
what it gets, so thirty of them in a row would ask for gigabytes (or, with shared
references, a structure whose JSON never ends). Every value the interpreter *builds*
(a multiselect, a projection, a flatten, a slice, a function's result) is measured as it
grows, and one larger than the limit stops the evaluation with `ExpressionTooLarge`
before the next step can double it. Values read from the context are not built, so only
the final result is measured for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from jmespath import functions as jmespath_functions
from jmespath.visitor import Options, TreeInterpreter

from treadle.domain._cost import (
    DEFAULT_MAX_COST,
    MEASURE,
    VISIT,
    Charge,
    Exhausted,
    Meter,
    function_cost,
)
from treadle.domain.errors import ExpressionBudgetExceeded, ExpressionTooLarge

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
"""`limits.max_expression_bytes` when the caller passes none."""

_SCALAR_BYTES = {None: 4, True: 4, False: 5}
# Node types whose result is a fresh value (not a reference into the context).
_BUILDING = frozenset({"flatten", "slice", "function_expression"})


class _Exceeded(Exception):
    """Raised inside the interpreter; `search` turns it into ExpressionTooLarge."""

    def __init__(self, size: int) -> None:
        self.size = size


def json_size(value: Any, limit: int, charge: Callable[[int], None] | None = None) -> int:
    """Bytes `value` takes as compact JSON, counted only until the count passes `limit`.

    Iterative and stopping early, so a structure sharing references (whose JSON would be
    exponentially long) costs at most about `limit` steps; each step is charged.
    """
    size = 0
    steps = 0
    stack = [value]
    while stack and size <= limit:
        steps += 1
        if charge is not None and steps % 1024 == 0:
            charge(1024 * MEASURE)
        item = stack.pop()
        if isinstance(item, str):
            size += 2 + (len(item) if item.isascii() else len(item.encode()))
        elif isinstance(item, dict):
            size += 1 + 2 * len(item) if item else 2
            for key, element in item.items():
                size += 2 + len(str(key))
                stack.append(element)
        elif isinstance(item, list | tuple):
            size += 1 + len(item) if item else 2
            stack.extend(item)
        else:
            size += _scalar_size(item)
    if charge is not None:
        charge((steps % 1024) * MEASURE)
    return size


def _scalar_size(item: Any) -> int:
    if item is None or isinstance(item, bool):
        return _SCALAR_BYTES[item]
    return len(str(item))


class _Budget:
    """The size of a value being assembled piece by piece, failing once past the limit."""

    __slots__ = ("charge", "limit", "size")

    def __init__(self, limit: int, charge: Charge) -> None:
        self.limit = limit
        self.charge = charge
        self.size = 2

    def add(self, piece: Any) -> None:
        self.size += 1 + json_size(piece, self.limit - self.size, self.charge)
        if self.size > self.limit:
            raise _Exceeded(self.size)


class _Functions(jmespath_functions.Functions):  # type: ignore[misc]  # jmespath is untyped
    """The built-in functions, with the two that can multiply their input bounded."""

    def __init__(self, limit: int, charge: Charge) -> None:
        super().__init__()
        self.limit = limit
        self.charge = charge

    def call_function(self, function_name: str, resolved_args: list[Any]) -> Any:
        # Charged before the call: the type check and the work itself walk the arguments.
        self.charge(function_cost(function_name, resolved_args))
        return super().call_function(function_name, resolved_args)

    @jmespath_functions.signature({"types": ["string"]}, {"types": ["array-string"]})  # type: ignore[untyped-decorator]
    def _func_join(self, separator: str, array: list[str]) -> str:
        # The separator repeats once per element: size it before Python builds it.
        size = len(separator) * max(len(array) - 1, 0) + sum(len(part) for part in array)
        if size > self.limit:
            raise _Exceeded(size)
        return separator.join(array)

    @jmespath_functions.signature({"types": ["expref"]}, {"types": ["array"]})  # type: ignore[untyped-decorator]
    def _func_map(self, expref: Any, arg: list[Any]) -> list[Any]:
        budget = _Budget(self.limit, self.charge)
        result = []
        for element in arg:
            current = expref.visit(expref.expression, element)
            budget.add(current)
            result.append(current)
        return result


class _Interpreter(TreeInterpreter):  # type: ignore[misc]  # jmespath is untyped
    def __init__(self, limit: int, charge: Charge) -> None:
        super().__init__(Options(custom_functions=_Functions(limit, charge)))
        self._limit = limit
        self._charge = charge

    def visit(self, node: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self._charge(VISIT)
        result = super().visit(node, *args, **kwargs)
        if node["type"] in _BUILDING:
            size = json_size(result, self._limit, self._charge)
            if size > self._limit:
                raise _Exceeded(size)
        return result

    def visit_multi_select_list(self, node: dict[str, Any], value: Any) -> Any:
        if value is None:
            return None
        budget = _Budget(self._limit, self._charge)
        collected = []
        for child in node["children"]:
            current = self.visit(child, value)
            budget.add(current)
            collected.append(current)
        return collected

    def visit_multi_select_dict(self, node: dict[str, Any], value: Any) -> Any:
        if value is None:
            return None
        budget = _Budget(self._limit, self._charge)
        collected = {}
        for child in node["children"]:
            current = self.visit(child, value)
            budget.add(child["value"])
            budget.add(current)
            collected[child["value"]] = current
        return collected

    def visit_projection(self, node: dict[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        return self._project(node["children"][1], base)

    def visit_value_projection(self, node: dict[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        if not isinstance(base, dict):
            return None
        return self._project(node["children"][1], base.values())

    def visit_filter_projection(self, node: dict[str, Any], value: Any) -> Any:
        base = self.visit(node["children"][0], value)
        if not isinstance(base, list):
            return None
        comparator = node["children"][2]
        kept = [element for element in base if self._is_true(self.visit(comparator, element))]
        return self._project(node["children"][1], kept)

    def _project(self, node: dict[str, Any], elements: Iterable[Any]) -> list[Any]:
        budget = _Budget(self._limit, self._charge)
        collected = []
        for element in elements:
            current = self.visit(node, element)
            if current is not None:
                budget.add(current)
                collected.append(current)
        return collected


def search(
    source: str,
    parsed: dict[str, Any],
    data: Any,
    limit: int,
    *,
    max_cost: int = DEFAULT_MAX_COST,
    meter: Meter | None = None,
) -> Any:
    """Evaluate a compiled expression's tree; raises ExpressionTooLarge past `limit` bytes,
    ExpressionBudgetExceeded past `max_cost` units or past the decision's `meter`."""
    charge = Charge(max_cost, meter)
    try:
        result = _Interpreter(limit, charge).visit(parsed, data)
        size = charge.meter.measured(result, lambda: json_size(result, limit))
    except _Exceeded as exc:
        raise ExpressionTooLarge(source, exc.size, limit) from None
    except Exhausted as exc:
        raise ExpressionBudgetExceeded(source, exc.spent, exc.limit, exc.key) from None
    if size > limit:
        raise ExpressionTooLarge(source, size, limit)
    return result


def reads_context(node: Any) -> bool:
    """Whether the expression's value can depend on the data it is evaluated against.

    The left side of a path, a projection or a pipe sees the data; the right side sees
    only what the left produced, so it depends on the data only through the left. An
    `&expr` argument sees only the other arguments' elements. Node types not listed
    here are taken to read the data (so they are never evaluated at registration).
    """
    if not isinstance(node, dict):
        return False
    kind = node.get("type")
    children = node.get("children", ())
    if kind in ("literal", "expref"):
        return False
    if kind in _LEFT_ONLY:
        return bool(children) and reads_context(children[0])
    if kind in _ANY_CHILD:
        return any(reads_context(child) for child in children)
    return True


def task_references(node: Any, *, at_root: bool = True) -> list[str]:
    """The task ids the expression names as `tasks.<id>` on the run's context.

    Only the parts that see the context (as in `reads_context`) count: `input.tasks.x`
    or `map(&tasks.x, input)` name a field of some other value, not a task.
    """
    if not isinstance(node, dict):
        return []
    kind = node.get("type")
    children = node.get("children", ())
    found: list[str] = []
    if (
        at_root
        and kind == "subexpression"
        and len(children) > 1
        and _is_field(children[0], "tasks")
    ):
        name = _leftmost_field(children[1])
        if name is not None:
            found.append(name)
    if kind in _LEFT_ONLY:
        return found + (task_references(children[0], at_root=at_root) if children else [])
    if kind in _ANY_CHILD:
        for child in children:
            found += task_references(child, at_root=at_root)
    return found


def _is_field(node: Any, name: str) -> bool:
    return isinstance(node, dict) and node.get("type") == "field" and node.get("value") == name


def _leftmost_field(node: Any) -> str | None:
    # `tasks.a[0]` and `tasks.a[*].b` put the id inside an index or a projection.
    while isinstance(node, dict):
        if node.get("type") == "field":
            return str(node.get("value"))
        if node.get("type") not in _LEFT_ONLY or not node.get("children"):
            return None
        node = node["children"][0]
    return None


_LEFT_ONLY = frozenset(
    {
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "pipe",
        "flatten",
    }
)
_ANY_CHILD = frozenset(
    {
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
        "or_expression",
        "and_expression",
        "not_expression",
        "comparator",
    }
)
