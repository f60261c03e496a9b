"""A secret echoed back in an encoded form is redacted as surely as the plain value."""

from __future__ import annotations

import json
from urllib.parse import quote, quote_plus

import pytest

from treadle.modules.worker._secrets import REDACTED, redact, redact_text

SECRET = 'tok "q"/a+b c\\d'


@pytest.mark.parametrize(
    "form",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(json.dumps(SECRET)[1:-1])[1:-1],
        quote(SECRET, safe=""),
        quote_plus(SECRET),
    ],
    ids=["plain", "json", "json-in-json", "url", "form"],
)
def test_each_encoded_form_is_redacted(form: str) -> None:
    """The plain, JSON-escaped (once and twice) and URL-encoded values all disappear."""
    assert redact_text(f"before {form} after", [SECRET]) == f"before {REDACTED} after"


def test_an_echoed_json_body_inside_json_output_is_redacted() -> None:
    """An echo server's `body` string holding the request JSON loses the escaped value."""
    output = {"json": {"body": json.dumps({"token": SECRET})}}
    assert SECRET not in json.dumps(redact(output, [SECRET]))
    assert json.dumps(SECRET)[1:-1] not in json.dumps(redact(output, [SECRET]))
