"""Expressions cannot build values past `max_bytes`, however they multiply their data."""

from __future__ import annotations

import time
from typing import Any

import jmespath
import msgspec
import pytest

from treadle.domain._bounded import json_size, reads_context
from treadle.domain.compile import Limits, compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid, ExpressionTooLarge
from treadle.domain.expressions import compile_template

LIMIT = 10_000
DOUBLINGS = {
    "multiselect": ("input" + ".[@, @]" * 40, "abc"),
    "join": ("input | " + " | ".join(["join('', [@, @])"] * 40), "abc"),
    "flatten": ("input | " + " | ".join(["[@, @][]"] * 40), [1]),
    "projection": ("input[*].join('', [@, @, @, @, @, @, @, @])", ["x" * 100] * 100),
    "map": ("map(&join('', [@, @, @, @]), input)", ["x" * 100] * 100),
    "multiselect dict": ("input" + ".{a: @, b: @}" * 40, "abc"),
    "join separator": ("join(input.sep, input.parts)", {"sep": "x" * 1000, "parts": ["a"] * 100}),
}


@pytest.mark.parametrize(("source", "data"), DOUBLINGS.values(), ids=list(DOUBLINGS))
def test_a_doubling_expression_fails_fast_at_the_limit(source: str, data: Any) -> None:
    """Each way JMESPath multiplies a value stops with ExpressionTooLarge within a second."""
    template = compile_template(f"${{ {source} }}", max_bytes=LIMIT)
    started = time.monotonic()
    with pytest.raises(ExpressionTooLarge) as caught:
        template.render({"input": data})
    assert time.monotonic() - started < 1.0
    assert caught.value.limit == LIMIT
    assert "limits.max_expression_bytes" in str(caught.value)


def test_a_context_value_over_the_limit_fails_and_one_under_passes() -> None:
    """The final value is measured even when the expression only reads it."""
    template = compile_template("${ input.s }", max_bytes=100)
    assert template.render({"input": {"s": "x" * 90}}) == "x" * 90
    with pytest.raises(ExpressionTooLarge):
        template.render({"input": {"s": "x" * 200}})


def test_ordinary_expressions_still_give_their_values() -> None:
    """Projections, filters, multiselects and map are unchanged below the limit."""
    context = {"input": {"items": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]}}
    assert compile_template("${ input.items[?a > `1`].b }").render(context) == ["y"]
    assert compile_template("${ map(&a, input.items) }").render(context) == [1, 2]
    assert compile_template("${ input.items[*].{b: b} }").render(context) == [
        {"b": "x"},
        {"b": "y"},
    ]
    assert compile_template("${ join('-', input.items[*].b) }").render(context) == "x-y"


@pytest.mark.parametrize(
    "value",
    [None, True, 12, 1.5, "héllo", [], {}, [1, "a", None], {"k": [True, {"x": "y"}]}],
)
def test_json_size_matches_compact_json(value: Any) -> None:
    """The measured size is the compact JSON length (msgspec's encoding)."""
    assert json_size(value, 10_000) == len(msgspec.json.encode(value))


def test_json_size_stops_early_on_shared_references() -> None:
    """A structure whose JSON would be exponential is measured only up to the limit."""
    value: Any = "abc"
    for _ in range(60):
        value = [value, value]
    assert 100 < json_size(value, 100) < 200


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("input.a", True),
        ("@", True),
        ("`[1, 2]`[*].a", False),
        ("join('', [`\"a\"`, 'b'])", False),
        ("map(&a, `[]`)", False),
        ("map(&a, input)", True),
        ("'x' || input", True),
        ("`1` | @", False),
    ],
)
def test_reads_context_finds_what_depends_on_the_run(source: str, expected: bool) -> None:
    """Only the data-facing side of paths, projections and pipes reads the run."""
    assert reads_context(jmespath.compile(source).parsed) is expected


def test_a_static_expression_over_the_limit_is_refused_at_registration() -> None:
    """An expression that reads no run data and is too large fails compile with its path."""
    doubling = '`"abc"` | ' + " | ".join(["join('', [@, @])"] * 20)
    data = {"name": "w", "tasks": {"a": {"handler": "h", "input": {"x": f"${{ {doubling} }}"}}}}
    limits = Limits(max_expression_bytes=1000)
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition(data), limits=limits)
    [issue] = caught.value.issues
    assert issue.path == "tasks.a.input.x"
    assert "limits.max_expression_bytes" in issue.message


def test_a_dynamic_expression_is_not_evaluated_at_registration() -> None:
    """An expression over run data compiles whatever the limit; it is checked per run."""
    data = {"name": "w", "tasks": {"a": {"handler": "h", "input": "${ input | [@, @] }"}}}
    workflow = compile_workflow(parse_definition(data), limits=Limits(max_expression_bytes=10))
    assert workflow.limits.max_expression_bytes == 10


def test_too_many_tasks_is_one_issue_naming_the_limit() -> None:
    """A definition over max_tasks is refused at `tasks` before anything else is checked."""
    tasks = {f"t{i}": {"handler": "h"} for i in range(4)}
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(
            parse_definition({"name": "w", "tasks": tasks}), limits=Limits(max_tasks=3)
        )
    [issue] = caught.value.issues
    assert issue.path == "tasks"
    assert "limits.max_tasks" in issue.message
