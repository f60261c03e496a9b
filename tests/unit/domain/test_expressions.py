"""Templates: literals stay literal, `${ }` strings are JMESPath, containers are walked."""

from __future__ import annotations

from typing import Any

import pytest

from treadle.domain.errors import ExpressionError
from treadle.domain.expressions import (
    TemplateSyntaxError,
    check_template,
    compile_template,
    expression_source,
    is_truthy,
)

CONTEXT: dict[str, Any] = {
    "input": {"sku": "A-1", "qty": 2, "tags": ["x", "y"]},
    "tasks": {"reserve": {"output": {"id": 7}, "status": "completed"}},
    "run": {"id": "r1", "workflow": "orders", "version": 3},
}


@pytest.mark.parametrize(
    "value", ["plain", "braces {a} and $ signs", "cost: $5", 3, None, True, {"k": "v"}, [1, "two"]]
)
def test_values_without_a_whole_expression_are_literals(value: Any) -> None:
    """Only a string that is exactly `${ expr }` is an expression; the rest renders as is."""
    template = compile_template(value)
    assert template.is_literal
    assert template.render(CONTEXT) == value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("${ input.sku }", "A-1"),
        ("${input.qty}", 2),
        ("${   tasks.reserve.output   }", {"id": 7}),
        ("${ run.version }", 3),
        ("${ input.tags[1] }", "y"),
        ("${ input.missing }", None),
        ("${ tasks.reserve.status == 'completed' }", True),
        ("${ length(input.tags) }", 2),
    ],
)
def test_expressions_yield_the_raw_value(source: str, expected: Any) -> None:
    """An expression renders to whatever JMESPath returns, not to a string."""
    template = compile_template(source)
    assert not template.is_literal
    assert template.render(CONTEXT) == expected


def test_nested_templates_render_every_level() -> None:
    """Dicts and lists are walked, so expressions deep inside are evaluated and literals kept."""
    template = compile_template(
        {"sku": "${ input.sku }", "qty": 1, "meta": {"ids": ["${ tasks.reserve.output.id }", 0]}}
    )
    assert template.render(CONTEXT) == {"sku": "A-1", "qty": 1, "meta": {"ids": [7, 0]}}


def test_literal_render_returns_a_copy() -> None:
    """Editing a rendered literal cannot change what the next render returns."""
    template = compile_template({"list": [1, 2]})
    first = template.render(CONTEXT)
    first["list"].append(3)
    assert template.render(CONTEXT) == {"list": [1, 2]}


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("${ input.[ }", "does not parse"),
        ("${ a +1 }", "does not parse"),
        ("${ }", "the expression is empty"),
        ("${ nosuch(input) }", "unknown function nosuch()"),
    ],
)
def test_bad_expressions_fail_at_compile_time_with_their_path(source: str, reason: str) -> None:
    """A syntax error or unknown function raises TemplateSyntaxError naming where it is."""
    with pytest.raises(TemplateSyntaxError, match=reason) as caught:
        compile_template({"a": [source]}, "tasks.t.input")
    assert caught.value.path == "tasks.t.input.a[0]"
    assert isinstance(caught.value, ExpressionError)


def test_check_template_reports_every_bad_expression() -> None:
    """check_template lists each bad expression at its own path instead of stopping at one."""
    template, issues = check_template({"a": "${ [ }", "b": ["${ ] }"]}, "output")
    assert template is None
    assert [issue.path for issue in issues] == ["output.a", "output.b[0]"]


def test_evaluation_errors_raise_expression_error() -> None:
    """A function applied to the wrong type raises ExpressionError carrying the expression."""
    template = compile_template("${ length(input.qty) }")
    with pytest.raises(ExpressionError) as caught:
        template.render(CONTEXT)
    assert caught.value.expression == "length(input.qty)"


def test_expression_source_finds_the_inner_text() -> None:
    """expression_source strips `${ }` and whitespace, and says None for non-expressions."""
    assert expression_source("${  a.b  }") == "a.b"
    assert expression_source("a.b") is None
    assert expression_source(["${ a }"]) is None


@pytest.mark.parametrize(
    ("value", "truth"),
    [(None, False), (False, False), ("", False), ([], False), ({}, False), (0, True), ("no", True)],
)
def test_truthiness_follows_jmespath(value: Any, truth: bool) -> None:
    """false, null and empty strings, lists and objects are false; every number is true."""
    assert is_truthy(value) is truth
