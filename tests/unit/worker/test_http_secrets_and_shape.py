"""Secret substitution and redaction, request checking and output shaping for http tasks."""

from __future__ import annotations

import pytest

from treadle.modules.worker._http_shape import (
    HttpRequestInvalid,
    parse_call,
    shape_output,
    status_error,
)
from treadle.modules.worker._secrets import (
    REDACTED,
    SecretMissing,
    redact,
    substitute_secrets,
)

ENV = {"TREADLE_SECRET_TOKEN": "tok-123", "TREADLE_SECRET_USER": "alice"}


def test_secrets_are_substituted_only_at_the_recorded_paths() -> None:
    """Recorded paths get the value; the same text elsewhere (from run data) stays as is."""
    request = {
        "url": "https://x.example/?u=${ secret.USER }",
        "headers": {"Authorization": "Bearer ${ secret.TOKEN }"},
        "json": {"smuggled": "${ secret.TOKEN }"},
        "secrets": [["headers", "Authorization"], ["url"]],
    }
    resolved, used = substitute_secrets(request, ENV, "TREADLE_SECRET_")
    assert resolved["headers"]["Authorization"] == "Bearer tok-123"
    assert resolved["url"] == "https://x.example/?u=alice"
    assert resolved["json"] == {"smuggled": "${ secret.TOKEN }"}
    assert "secrets" not in resolved
    assert sorted(used) == ["alice", "tok-123"]
    assert request["headers"] == {"Authorization": "Bearer ${ secret.TOKEN }"}


def test_a_missing_secret_names_the_secret_and_its_variable() -> None:
    """The error says which secret and which environment variable, never a value."""
    request = {"url": "${ secret.NOPE }", "secrets": [["url"]]}
    with pytest.raises(SecretMissing, match=r"'NOPE'.*TREADLE_SECRET_NOPE"):
        substitute_secrets(request, ENV, "TREADLE_SECRET_")


def test_paths_that_do_not_lead_to_a_string_are_ignored() -> None:
    """A stale or odd path changes nothing rather than failing."""
    request = {"url": "u", "secrets": [["headers", "X"], ["url", 3], "bad", []]}
    resolved, used = substitute_secrets(request, ENV, "TREADLE_SECRET_")
    assert resolved == {"url": "u"}
    assert used == []


def test_redaction_reaches_nested_strings_and_keys() -> None:
    """Every occurrence of a secret value, in values and keys, becomes [redacted]."""
    output = {"json": {"echo": ["Bearer tok-123"], "tok-123": 1}, "status": 200}
    assert redact(output, ["tok-123"]) == {
        "json": {"echo": [f"Bearer {REDACTED}"], REDACTED: 1},
        "status": 200,
    }


def test_parse_call_checks_types_and_fills_defaults() -> None:
    """Headers and query values become strings, a form body is data, timeout defaults."""
    call = parse_call(
        {
            "method": "post",
            "url": "http://h/",
            "headers": {"X-N": 5, "X-Skip": None},
            "query": {"b": True, "l": [1, None, "x"]},
            "form": {"a": 1},
            "expect": [201],
        },
        30.0,
    )
    assert call.method == "POST"
    assert call.headers == {"X-N": "5"}
    assert call.query == {"b": "true", "l": ["1", "x"]}
    assert call.body == {"data": {"a": "1"}}
    assert call.timeout == 30.0
    assert call.accepts(201)
    assert not call.accepts(200)


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        ("GET http://h", "must be an object"),
        ({"url": 5}, "url must be a string"),
        ({"url": "http://h", "json": {}, "form": {}}, "not both"),
        ({"url": "http://h", "headers": {"X": "a\r\nB: c"}}, "line break"),
        ({"url": "http://h", "headers": ["x"]}, "headers must be an object"),
        ({"url": "http://h", "query": {"q": {"a": 1}}}, "query.q"),
        ({"url": "http://h", "expect": ["200"]}, "expect must be a list"),
        ({"url": "http://h", "method": "GET /x"}, "not an HTTP method"),
        ({"url": "http://xn--localhost-/z"}, "not a valid URL"),
        ({"url": "http://h:99999/x"}, "port 99999, outside 1-65535"),
        ({"url": "http://h", "headers": {"X": "café"}}, "not visible ASCII"),
        ({"url": "http://h", "headers": {"X": "\u2028"}}, "not visible ASCII"),
        ({"url": "http://h", "headers": {"X Y": "1"}}, "not a valid HTTP token"),
    ],
)
def test_bad_rendered_requests_are_refused(request_: object, match: str) -> None:
    """Whatever an expression rendered, a request httpx cannot send is a clear error."""
    with pytest.raises(HttpRequestInvalid, match=match):
        parse_call(request_, 30.0)


def test_json_answers_become_json_and_others_text() -> None:
    """JSON content types are decoded; anything else (or broken JSON) is text."""
    headers = [("Content-Type", "application/problem+json"), ("X-A", "1"), ("x-a", "2")]
    out = shape_output(404, headers, b'{"title": "no"}', None)
    assert out == {
        "status": 404,
        "headers": {"content-type": "application/problem+json", "x-a": "1, 2"},
        "json": {"title": "no"},
    }
    broken = shape_output(200, [("content-type", "application/json")], b"{oops", None)
    assert broken["text"] == "{oops"
    latin = shape_output(200, [], "é".encode("latin-1"), "latin-1")
    assert latin["text"] == "é"


@pytest.mark.parametrize(
    ("status", "retry_on", "retryable"),
    [(503, [], True), (500, [], True), (429, [], True), (404, [], False), (409, [409], True)],
)
def test_status_errors_retry_5xx_429_and_retry_on(
    status: int, retry_on: list[int], retryable: bool
) -> None:
    """5xx and 429 are retryable, other codes only when the definition lists them."""
    call = parse_call({"url": "http://h/x", "retry_on": retry_on}, 5.0)
    output = {"status": status, "headers": {}, "text": "nope"}
    info = status_error(call, "http://h/x", output)
    assert info.type == "HttpStatusError"
    assert info.retryable is retryable
    assert f"answered {status}, expected 2xx: nope" in info.message
