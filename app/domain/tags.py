"""Run tags: short `key: value` labels that find runs (`GET /v1/runs?tag=customer:acme`).

A run's tags are fixed at its start, merged from its definition's `tags`, its schedule's
and the start request's (the later wins per key). Keys are identifier-like so that
`key:value` in a query string splits at the first colon without escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from treadle.domain.errors import TreadleError, ValidationIssue

TAG_KEY_CHARS = 64
TAG_VALUE_CHARS = 200
MAX_TAGS = 16
"""Tags on one run: enough to label it, few enough that an index of them stays small."""
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")

Tags = dict[str, str]


def tag_issues(data: Any, path: str = "tags") -> list[ValidationIssue]:
    """Why `data` is not a valid set of tags (empty when it is)."""
    if not isinstance(data, Mapping):
        return [ValidationIssue(path=path, message="must be an object of string values")]
    issues: list[ValidationIssue] = []
    if len(data) > MAX_TAGS:
        message = f"has {len(data)} tags; at most {MAX_TAGS} are allowed"
        issues.append(ValidationIssue(path=path, message=message))
    for key, value in data.items():
        key_problem = _key_problem(key)
        if key_problem is not None:
            issues.append(ValidationIssue(path=path, message=f"key {key!r} {key_problem}"))
            continue
        value_problem = _value_problem(value)
        if value_problem is not None:
            issues.append(ValidationIssue(path=f"{path}.{key}", message=value_problem))
    return issues


def _key_problem(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    if len(key) > TAG_KEY_CHARS:
        return f"is {len(key)} characters long; at most {TAG_KEY_CHARS} are allowed"
    if not _KEY.fullmatch(key):
        return "may hold only letters, digits and _ . - / (and not start with . - /)"
    return None


def _value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if len(value) > TAG_VALUE_CHARS:
        return f"is {len(value)} characters long; at most {TAG_VALUE_CHARS} are allowed"
    if "\x00" in value:
        return "must not contain a NUL character"
    return None


def merge_tags(*layers: Mapping[str, str] | None) -> Tags:
    """The tags of a run from its layers, lowest first (a later layer wins per key)."""
    merged: Tags = {}
    for layer in layers:
        merged.update(layer or {})
    return merged


def parse_tag_filter(text: str) -> tuple[str, str] | str:
    """`key:value` as (key, value), or why it is not one."""
    key, sep, value = text.partition(":")
    if not sep:
        return f"must be key:value, got {text!r}"
    problem = _key_problem(key) or _value_problem(value)
    if problem is not None:
        return f"{text!r}: {problem}"
    return key, value


class TagsInvalid(TreadleError):
    """A run's tags failed validation."""

    def __init__(self, issues: list[ValidationIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues) or "invalid tags")


def check_tags(data: Any, path: str = "tags") -> Tags:
    """`data` as tags; raises `TagsInvalid` listing every issue."""
    issues = tag_issues(data, path)
    if issues:
        raise TagsInvalid(issues)
    return dict(data)
