"""Run tags, pure: validation with paths, merging layers, and the `key:value` filter."""

from __future__ import annotations

import pytest

from treadle.domain.tags import (
    MAX_TAGS,
    TagsInvalid,
    check_tags,
    merge_tags,
    parse_tag_filter,
    tag_issues,
)


def test_valid_tags_pass_and_each_problem_has_its_path() -> None:
    """Keys are identifier-like and short, values short strings, at most MAX_TAGS."""
    assert check_tags({"customer": "acme", "team/area": "x.y-z"}) == {
        "customer": "acme",
        "team/area": "x.y-z",
    }
    issues = tag_issues({"bad key": "v", "n": 3, "long": "v" * 201, "k" * 65: "v"})
    assert [i.path for i in issues] == ["tags", "tags.n", "tags.long", "tags"]
    with pytest.raises(TagsInvalid):
        check_tags({f"k{i}": "v" for i in range(MAX_TAGS + 1)})
    assert [i.path for i in tag_issues(["a"])] == ["tags"]


def test_later_layers_win_per_key() -> None:
    """Definition, then schedule, then the start request: the last one names the value."""
    merged = merge_tags({"a": "def", "b": "def"}, None, {"b": "sched"}, {"c": "start"})
    assert merged == {"a": "def", "b": "sched", "c": "start"}


def test_a_tag_filter_splits_at_the_first_colon() -> None:
    """`url:https://x` keeps its colons in the value; no colon is an error message."""
    assert parse_tag_filter("url:https://x") == ("url", "https://x")
    assert parse_tag_filter("k:") == ("k", "")
    assert isinstance(parse_tag_filter("nocolon"), str)
    assert isinstance(parse_tag_filter("bad key:v"), str)
