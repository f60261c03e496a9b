"""String interpolation: `${ expr }` among other text, `$${` for a literal, and its errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.domain._runs import Run, workflow
from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid, ExpressionError
from treadle.domain.events import DispatchTask, RunStarted
from treadle.domain.expressions import check_template, compile_template, expression_source
from treadle.domain.state import RunStatus

CONTEXT = {"input": {"id": "ab-1", "n": 3, "x": 1.5, "yes": True, "none": None, "obj": {"a": 1}}}


@pytest.mark.parametrize(
    ("text", "rendered"),
    [
        ("https://x/items/${ input.id }?q=1", "https://x/items/ab-1?q=1"),
        ("${ input.n } items at ${input.x}", "3 items at 1.5"),
        ("flag=${ input.yes }, missing=${ input.none }", "flag=true, missing=null"),
        ("${ input.id }${ input.n }", "ab-13"),
        ("cost: $${ input.n } is ${ input.n }", "cost: ${ input.n } is 3"),
        ("keys: ${ join(',', keys(input.obj)) } }", "keys: a }"),
        ("${ {id: input.id}.id }-${ '}' }", "ab-1-}"),
    ],
)
def test_expressions_inside_text_are_written_in_as_json_scalars(text: str, rendered: str) -> None:
    """Each `${ expr }` in a longer string is replaced by its value as JSON text (a
    string as itself); `$${` writes `${`; braces and quotes inside an expression nest."""
    assert compile_template(text).render(CONTEXT) == rendered


def test_a_whole_string_expression_still_yields_the_value_itself() -> None:
    """Exactly `${ expr }` keeps its raw value (an object stays an object)."""
    assert compile_template("${ input.obj }").render(CONTEXT) == {"a": 1}
    assert compile_template("  ${ input.n }").render(CONTEXT) == "  3"
    assert expression_source("${ input.n }") == "input.n"
    assert expression_source("${ input.n } ${ input.x }") is None


@pytest.mark.parametrize("expression", ["input.obj", "[input.n]"])
def test_an_object_or_list_inside_text_is_refused_naming_the_field(expression: str) -> None:
    """Interpolating an object or a list fails with the field's path in the message."""
    template = compile_template(f"id=${{ {expression} }}", "tasks.a.input.url")
    with pytest.raises(ExpressionError) as caught:
        template.render(CONTEXT)
    assert "in tasks.a.input.url" in str(caught.value)
    assert "only a string, number, boolean or null" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a ${ input.id", "the ${ is never closed with }"),
        ("a ${ } b", "the expression is empty"),
        ("a ${ input.[ } b", "does not parse"),
        ("a ${ nope(input) } b", "unknown function nope()"),
    ],
)
def test_a_malformed_placeholder_is_refused_at_its_path(text: str, message: str) -> None:
    """Registration reports a bad `${` inside text at the field's own path."""
    _, issues = check_template({"url": text}, "tasks.a.input")
    assert [issue.path for issue in issues] == ["tasks.a.input.url"]
    assert message in issues[0].message


def test_a_secret_reference_cannot_share_a_string_with_other_expressions() -> None:
    """A value interpolated beside a secret reference could smuggle in another reference."""
    _, issues = check_template("Bearer ${ secret.TOKEN } ${ input.x }", "p", allow_secrets=True)
    assert "cannot also interpolate" in issues[0].message
    template, issues = check_template("Bearer ${ secret.TOKEN }", "p", allow_secrets=True)
    assert issues == []
    assert template is not None
    assert template.render({}) == "Bearer ${ secret.TOKEN }"


@given(st.text(alphabet=st.sampled_from("${}ab $\\'`\""), max_size=24))
def test_escaping_every_dollar_brace_gives_the_text_back(text: str) -> None:
    """Any text with each `${` written `$${` compiles to a literal that renders as itself."""
    escaped = text.replace("${", "$${")
    template = compile_template(escaped)
    assert template.is_literal
    assert template.render({}) == text


def test_http_url_and_handler_input_are_interpolated_in_a_run() -> None:
    """An http task's url and a handler's input render with the run's values."""
    tasks = {
        "get": {
            "type": "http",
            "request": {"url": "https://x.example/items/${ input.id }?q=1"},
        },
        "note": {"handler": "h", "input": {"text": "item ${ input.id } (${ input.n })"}},
    }
    run = Run(workflow(tasks), {"id": "ab-1", "n": 2})
    run.apply(RunStarted(run_id="r1"))
    sent = {c.task_id: c.input for c in run.commands if isinstance(c, DispatchTask)}
    assert sent["get"]["url"] == "https://x.example/items/ab-1?q=1"
    assert sent["note"] == {"text": "item ab-1 (2)"}


def test_an_object_interpolated_at_run_time_fails_the_run_naming_the_field() -> None:
    """A run whose input makes an interpolation an object fails with a clear error."""
    tasks = {"note": {"handler": "h", "input": {"text": "item ${ input.id }"}}}
    run = Run(workflow(tasks), {"id": {"nested": True}})
    run.apply(RunStarted(run_id="r1"))
    assert run.state.status is RunStatus.FAILED
    error = run.state.tasks["note"].error
    assert error is not None
    assert error.type == "ExpressionError"
    assert "is an object in tasks.note.input.text" in error.message


def test_registration_refuses_a_malformed_interpolation_with_its_path() -> None:
    """A definition with an unclosed `${` in a url is refused at the url's path."""
    definition: dict[str, Any] = {
        "name": "w",
        "tasks": {"get": {"type": "http", "request": {"url": "https://x/${ input.id"}}},
    }
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition(definition))
    assert [i.path for i in caught.value.issues] == ["tasks.get.request.url"]
