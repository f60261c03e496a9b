"""`${ secret.NAME }` in definitions: kept as references, recorded by path, refused elsewhere."""

from __future__ import annotations

from typing import Any

import pytest

from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid


def _http(request: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "w", "tasks": {"call": {"type": "http", "request": request, **extra}}}


def _issues(definition: dict[str, Any]) -> list[str]:
    with pytest.raises(DefinitionInvalid) as info:
        compile_workflow(parse_definition(definition))
    return [str(issue) for issue in info.value.issues]


def test_a_reference_renders_to_itself_with_its_paths() -> None:
    """The rendered request keeps the reference text and lists where the definition put it."""
    workflow = compile_workflow(
        parse_definition(
            _http(
                {
                    "url": "https://api.example/${ secret.PATH_PART }",
                    "headers": {"Authorization": "Bearer ${ secret.TOKEN }", "X": "${ input.x }"},
                    "json": {"keys": ["${ secret.TOKEN }"]},
                }
            )
        )
    )
    request = workflow.tasks["call"].request
    assert request is not None
    rendered = request.render({"input": {"x": "1"}, "tasks": {}, "run": {}})
    assert rendered["headers"] == {"Authorization": "Bearer ${ secret.TOKEN }", "X": "1"}
    assert rendered["json"] == {"keys": ["${ secret.TOKEN }"]}
    assert sorted(rendered["secrets"]) == [
        ["headers", "Authorization"],
        ["json", "keys", 0],
        ["url"],
    ]


def test_a_request_without_references_has_no_secrets_entry() -> None:
    """Nothing is added to requests that use no secret."""
    workflow = compile_workflow(parse_definition(_http({"url": "https://a.example"})))
    request = workflow.tasks["call"].request
    assert request is not None
    assert "secrets" not in request.render({"input": None, "tasks": {}, "run": {}})


def test_secret_inside_a_larger_expression_is_refused() -> None:
    """A function over secret.X could reshape the value, so it is a definition error."""
    issues = _issues(_http({"url": "https://a.example", "json": "${ join('-', [secret.TOKEN]) }"}))
    assert len(issues) == 1
    assert issues[0].startswith("tasks.call.request.json:")
    assert "whole value" in issues[0]


def test_a_field_called_secret_after_a_dot_is_fine() -> None:
    """`input.secret` reads the input, not the secret store."""
    workflow = compile_workflow(
        parse_definition(_http({"url": "https://a.example", "json": "${ input.secret }"}))
    )
    assert "call" in workflow.tasks


def test_references_outside_an_http_request_are_refused() -> None:
    """A handler's input cannot receive secrets (only http requests are substituted)."""
    definition = {"name": "w", "tasks": {"a": {"handler": "h", "input": "${ secret.TOKEN }"}}}
    assert _issues(definition) == [
        "tasks.a.input: expression '${ secret.TOKEN }': "
        "secret references are only resolved in an http task's request"
    ]


def test_a_malformed_reference_is_refused() -> None:
    """A name with `__` or odd characters is a clear error, not a literal."""
    issues = _issues(_http({"url": "https://a.example", "headers": {"A": "${ secret.A__B }"}}))
    assert "NAME made of letters, digits and single underscores" in issues[0]


def test_retry_on_codes_are_checked_and_rendered() -> None:
    """retry_on takes status codes and reaches the rendered request."""
    assert _issues(_http({"url": "https://a.example"}, retry_on=[99])) == [
        "tasks.call.retry_on[0]: 99 is not an HTTP status code"
    ]
    workflow = compile_workflow(
        parse_definition(_http({"url": "https://a.example"}, retry_on=[409]))
    )
    request = workflow.tasks["call"].request
    assert request is not None
    assert request.render({"input": None, "tasks": {}, "run": {}})["retry_on"] == [409]
