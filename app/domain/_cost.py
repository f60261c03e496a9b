"""A deterministic CPU budget for expressions: cost units, not a clock.

The domain is pure, so time is not measured; every step the interpreter takes is
charged instead. A unit is about 0.1 µs of this machine's work: visiting a node costs 10,
a function pays for each element its arguments hold (its type check walks them), `sort`
and the `*_by` functions n·log2(n) more, and measuring a value's JSON size one per
element. A `Meter` is shared by every expression of one decision (the decider renders
many), and each evaluation also has its own cap; past either, `Exhausted` is raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

DEFAULT_MAX_COST = 200_000
"""`limits.max_expression_cost`: the units one evaluation may spend (about 20 ms)."""
DEFAULT_MAX_DECISION_COST = 400_000
"""`limits.max_decision_expression_cost`: the units all of one decision's evaluations may
spend together (about 40 ms)."""

VISIT = 10
MEASURE = 4
"""Per element of a value measured while it is built (a Python loop, ~0.4 µs)."""
_SORTING = frozenset({"sort", "sort_by", "max_by", "min_by"})


class Exhausted(Exception):
    """Raised inside the interpreter; `search` turns it into ExpressionBudgetExceeded."""

    def __init__(self, spent: int, limit: int, key: str) -> None:
        self.spent = spent
        self.limit = limit
        self.key = key


class Meter:
    """The units a decision's expressions have spent, against the decision's budget."""

    __slots__ = ("_sizes", "limit", "spent")

    def __init__(self, limit: int = DEFAULT_MAX_DECISION_COST) -> None:
        self.limit = limit
        self.spent = 0
        self._sizes: dict[int, tuple[Any, int]] = {}

    def measured(self, value: Any, measure: Callable[[], int]) -> int:
        """The JSON size of an expression's result, measured once per object per decision.

        Not charged: a result read from the context (`${ input }`) is bounded by the input
        and output limits, and 300 tasks passing on the same input measure it once. A
        built result was charged while it was built. The value is kept with its size, so
        its id cannot be reused by another object during the decision.
        """
        if not isinstance(value, list | dict | str):
            return measure()
        found = self._sizes.get(id(value))
        if found is not None and found[0] is value:
            return found[1]
        size = measure()
        self._sizes[id(value)] = (value, size)
        return size


class Charge:
    """One evaluation's spending: counted against its own cap and its decision's meter."""

    __slots__ = ("limit", "meter", "spent")

    def __init__(self, limit: int, meter: Meter | None) -> None:
        self.limit = limit
        self.meter = meter if meter is not None else Meter()
        self.spent = 0

    def __call__(self, units: int) -> None:
        self.spent += units
        self.meter.spent += units
        if self.spent > self.limit:
            raise Exhausted(self.spent, self.limit, "limits.max_expression_cost")
        if self.meter.spent > self.meter.limit:
            key = "limits.max_decision_expression_cost"
            raise Exhausted(self.meter.spent, self.meter.limit, key)


def function_cost(name: str, args: list[Any]) -> int:
    """What calling a built-in function on these arguments costs, before it runs."""
    units = VISIT
    for arg in args:
        if isinstance(arg, list | dict):
            units += len(arg)
            if name in _SORTING and len(arg) > 1:
                units += int(len(arg) * math.log2(len(arg)))
        elif isinstance(arg, str):
            units += len(arg) // 16
    return units


def value_cost(value: Any) -> int:
    """What comparing or copying a value costs at its top level (C loops, cheap per element)."""
    if isinstance(value, list | dict):
        return len(value) // 4
    if isinstance(value, str):
        return len(value) // 64
    return 0
