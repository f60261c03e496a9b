"""Definition parsing, validation (one test per rule, exact paths), digest and input checks."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from treadle.domain.compile import (
    compile_workflow,
    definition_digest,
    parse_definition,
    validate_input,
)
from treadle.domain.errors import DefinitionInvalid, InputInvalid

ORDER: dict[str, Any] = {
    "name": "order-fulfillment",
    "input_schema": {
        "type": "object",
        "required": ["sku"],
        "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}},
    },
    "tasks": {
        "reserve": {
            "handler": "inventory.reserve",
            "input": {"sku": "${ input.sku }", "qty": 1},
            "retry": {"max_attempts": 5, "initial_interval": "1s", "max_interval": "1m"},
            "timeout": "30s",
        },
        "charge": {
            "after": ["reserve"],
            "type": "http",
            "request": {
                "method": "post",
                "url": "https://pay.example/charge",
                "json": "${ tasks.reserve.output }",
            },
        },
        "ship": {
            "after": ["charge"],
            "when": "${ tasks.charge.output.status == 'ok' }",
            "handler": "shipping.create",
        },
    },
    "output": "${ tasks.ship.output }",
}


def issues_of(data: dict[str, Any]) -> list[str]:
    """Parse and compile `data`, returning every issue as `path: message`."""
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition(data))
    return [str(issue) for issue in caught.value.issues]


def with_task(task_id: str, task: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A small valid workflow plus one extra task (and top-level overrides)."""
    data: dict[str, Any] = {"name": "w", "tasks": {"a": {"handler": "h"}, task_id: task}}
    data.update(top)
    return data


# --- parsing ------------------------------------------------------------------------


def test_parses_json_bytes_text_and_dicts_alike() -> None:
    """The same definition decodes from bytes, str and a dict into equal Structs."""
    raw = msgspec.json.encode(ORDER)
    assert parse_definition(raw) == parse_definition(raw.decode()) == parse_definition(ORDER)


def test_parse_error_paths_name_the_task() -> None:
    """A wrong type inside a task is reported at `tasks.<id>.after[0]`, not msgspec's `[...]`."""
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition({"name": "w", "tasks": {"charge": {"after": [1]}}})
    assert [str(i) for i in caught.value.issues] == ["tasks.charge.after[0]: expected str, got int"]


def test_unknown_fields_are_errors_at_their_path() -> None:
    """A misspelt key is not dropped silently: `tasks.a.handlr: unknown field`."""
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition({"name": "w", "tasks": {"a": {"handlr": "x"}}, "colour": 1})
    assert [str(i) for i in caught.value.issues] == [
        "colour: unknown field",
        "tasks.a.handlr: unknown field",
    ]


def test_missing_required_fields_are_named() -> None:
    """A definition without a name says `name: required`."""
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition({"tasks": {}})
    assert [str(i) for i in caught.value.issues] == ["name: required"]


@pytest.mark.parametrize(
    ("data", "message"), [(b"{", "not valid JSON"), ("[1]", "expected an object")]
)
def test_non_objects_are_rejected(data: bytes | str, message: str) -> None:
    """Broken JSON or a non-object gives one issue at the root."""
    with pytest.raises(DefinitionInvalid, match=message):
        parse_definition(data)


# --- the compiled form --------------------------------------------------------------


def test_compiles_the_design_example() -> None:
    """The example of DESIGN.md compiles with durations in seconds and a topological order."""
    workflow = compile_workflow(parse_definition(ORDER), default_task_timeout=120.0)
    assert workflow.name == "order-fulfillment"
    assert workflow.order == ("reserve", "charge", "ship")
    reserve, charge, ship = (workflow.tasks[t] for t in ("reserve", "charge", "ship"))
    assert reserve.timeout_seconds == 30.0
    assert charge.timeout_seconds == 120.0
    assert reserve.retry.max_attempts == 5
    assert reserve.retry.max_interval == 60.0
    assert ship.deps == ("charge",)
    assert ship.when is not None
    assert charge.request is not None
    context = {"tasks": {"reserve": {"output": {"hold": 1}}}}
    assert charge.request.render(context) == {
        "method": "POST",
        "url": "https://pay.example/charge",
        "json": {"hold": 1},
    }


def test_topological_order_keeps_definition_order_among_ready_tasks() -> None:
    """Dependencies come first; among ready tasks the one listed earliest goes first."""
    data = {
        "name": "w",
        "tasks": {
            "d": {"handler": "h", "after": ["b", "c"]},
            "c": {"handler": "h", "after": ["a"]},
            "b": {"handler": "h", "after": ["a"]},
            "a": {"handler": "h"},
            "e": {"handler": "h"},
        },
    }
    assert compile_workflow(parse_definition(data)).order == ("a", "c", "b", "d", "e")


def test_retry_backoff_is_exponential_and_capped() -> None:
    """delay(n) = initial * backoff**(n-1), never above max_interval, even for huge n."""
    workflow = compile_workflow(parse_definition(ORDER))
    retry = workflow.tasks["reserve"].retry
    assert [retry.delay(n) for n in (1, 2, 3, 7, 8)] == [1.0, 2.0, 4.0, 60.0, 60.0]
    assert retry.delay(10_000) == 60.0


def test_every_issue_is_collected_not_just_the_first() -> None:
    """Several independent mistakes come back together."""
    data = {
        "name": "bad name",
        "tasks": {"a": {"handler": "h", "after": ["zz"]}, "b": {"type": "sleep"}},
        "timeout": "soon",
    }
    assert len(issues_of(data)) == 4


# --- one test per rule --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "issue"),
    [
        ("", "name: the workflow name is empty"),
        (
            "has space",
            "name: the workflow name 'has space' may only use letters, digits, '_', '.' and '-'",
        ),
    ],
)
def test_workflow_name_must_be_url_safe(name: str, issue: str) -> None:
    """The workflow name is non-empty and made of [A-Za-z0-9_.-]."""
    assert issues_of({"name": name, "tasks": {"a": {"handler": "h"}}}) == [issue]


def test_at_least_one_task() -> None:
    """A workflow without tasks is rejected."""
    assert issues_of({"name": "w", "tasks": {}}) == ["tasks: a workflow needs at least one task"]


def test_task_ids_must_be_url_safe() -> None:
    """Task ids appear in URLs, so `a/b` is refused at `tasks.a/b`."""
    assert issues_of(with_task("a/b", {"handler": "h"})) == [
        "tasks.a/b: the task id 'a/b' may only use letters, digits, '_', '.' and '-'"
    ]


def test_after_must_name_existing_tasks() -> None:
    """A dependency on an unknown task is reported at its index."""
    assert issues_of(with_task("charge", {"handler": "h", "after": ["a", "reserv"]})) == [
        "tasks.charge.after[1]: unknown task 'reserv'"
    ]


def test_a_task_cannot_depend_on_itself() -> None:
    """Self-dependency is its own, clear error rather than a one-task cycle."""
    assert issues_of(with_task("b", {"handler": "h", "after": ["b"]})) == [
        "tasks.b.after[0]: a task cannot depend on itself"
    ]


def test_cycles_are_named() -> None:
    """A cycle is reported once, spelling out the chain of tasks."""
    data = {
        "name": "w",
        "tasks": {
            "a": {"handler": "h", "after": ["c"]},
            "b": {"handler": "h", "after": ["a"]},
            "c": {"handler": "h", "after": ["b"]},
            "d": {"handler": "h"},
        },
    }
    assert issues_of(data) == ["tasks.a.after: cycle a -> c -> b -> a"]


@pytest.mark.parametrize(
    ("field", "value", "issue"),
    [
        ("input", {"x": "${ [ }"}, "tasks.b.input.x: expression '[': does not parse"),
        ("when", "${ a == }", "tasks.b.when: expression 'a ==': does not parse"),
    ],
)
def test_task_expressions_must_parse(field: str, value: Any, issue: str) -> None:
    """A bad `${ }` in input or when is reported at its exact place."""
    (found,) = issues_of(with_task("b", {"handler": "h", field: value}))
    assert found.startswith(issue)


def test_when_must_be_an_expression() -> None:
    """`when: yes` is a mistake (a literal string would always be true)."""
    assert issues_of(with_task("b", {"handler": "h", "when": "yes"})) == [
        "tasks.b.when: must be an expression written as ${ ... }"
    ]


def test_output_expression_must_parse() -> None:
    """The workflow's output template is checked like any other."""
    (found,) = issues_of(with_task("b", {"handler": "h"}, output={"r": "${ ) }"}))
    assert found.startswith("output.r: expression ')': does not parse")


@pytest.mark.parametrize(
    ("path", "task", "issue"),
    [
        ("timeout", {"handler": "h", "timeout": "5x"}, "tasks.b.timeout: '5x' is not a duration"),
        ("timeout", {"handler": "h", "timeout": 0}, "tasks.b.timeout: must be longer than zero"),
        (
            "schedule_to_start_timeout",
            {"handler": "h", "schedule_to_start_timeout": "soon"},
            "tasks.b.schedule_to_start_timeout: 'soon' is not a duration",
        ),
        (
            "schedule_to_start_timeout",
            {"handler": "h", "schedule_to_start_timeout": "0s"},
            "tasks.b.schedule_to_start_timeout: must be longer than zero",
        ),
        (
            "schedule_to_start_timeout",
            {
                "type": "http",
                "request": {"url": "https://x.example/"},
                "schedule_to_start_timeout": -5,
            },
            "tasks.b.schedule_to_start_timeout: duration -5 is negative",
        ),
    ],
)
def test_durations_must_parse_and_be_positive(path: str, task: dict[str, Any], issue: str) -> None:
    """Timeouts are durations longer than zero."""
    (found,) = issues_of(with_task("b", task))
    assert found.startswith(issue)


def test_schedule_to_start_is_the_tasks_own_or_the_default_and_only_for_dispatched() -> None:
    """handler, http and map items take the config default unless they set their own."""
    data = {
        "name": "w",
        "tasks": {
            "own": {"handler": "h", "schedule_to_start_timeout": "1m"},
            "plain": {"type": "http", "request": {"url": "https://x.example/"}},
            "m": {"type": "map", "items": "${ input }", "task": {"handler": "h"}},
            "nap": {"type": "sleep", "duration": "1s"},
        },
    }
    off = compile_workflow(parse_definition(data))
    assert off.tasks["own"].schedule_to_start_seconds == 60.0
    assert off.tasks["plain"].schedule_to_start_seconds is None
    on = compile_workflow(parse_definition(data), default_schedule_to_start=5.0)
    assert on.tasks["own"].schedule_to_start_seconds == 60.0
    assert on.tasks["plain"].schedule_to_start_seconds == 5.0
    template = on.tasks["m"].map_task
    assert template is not None
    assert template.schedule_to_start_seconds == 5.0
    assert on.tasks["m"].schedule_to_start_seconds is None
    assert on.tasks["nap"].schedule_to_start_seconds is None
    sleeping = {"type": "sleep", "duration": "1s", "schedule_to_start_timeout": "5s"}
    assert issues_of(with_task("b", sleeping)) == [
        "tasks.b.schedule_to_start_timeout: not allowed on a sleep task"
    ]


def test_workflow_timeout_must_parse() -> None:
    """The workflow's own timeout is a duration too."""
    (found,) = issues_of(with_task("b", {"handler": "h"}, timeout="later"))
    assert found.startswith("timeout: 'later' is not a duration")


def test_retry_policy_must_be_sane() -> None:
    """max_attempts >= 1, backoff >= 1 and intervals longer than zero, each at its path."""
    retry = {"max_attempts": 0, "backoff": 0.5, "initial_interval": "0s", "max_interval": -1}
    found = issues_of(with_task("b", {"handler": "h", "retry": retry}))
    assert found == [
        "tasks.b.retry.max_attempts: must be at least 1",
        "tasks.b.retry.backoff: must be at least 1",
        "tasks.b.retry.initial_interval: must be longer than zero",
        "tasks.b.retry.max_interval: duration -1 is negative",
    ]


def test_handler_task_needs_a_handler() -> None:
    """The default task type runs a named handler, so the name is required."""
    assert issues_of(with_task("b", {})) == ["tasks.b.handler: required for a handler task"]


def test_http_task_needs_a_request() -> None:
    """An http task without request says so."""
    assert issues_of(with_task("b", {"type": "http"})) == [
        "tasks.b.request: required for an http task"
    ]


def test_http_request_needs_a_url_and_a_method() -> None:
    """The URL is required and the method must be a real HTTP method."""
    task = {"type": "http", "request": {"method": "FETCH"}}
    assert issues_of(with_task("b", task)) == [
        "tasks.b.request.url: required",
        "tasks.b.request.method: 'FETCH' is not one of "
        "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS",
    ]


def test_http_literal_urls_must_be_http() -> None:
    """A literal URL must be http(s); an expression is checked when it renders."""
    bad = {"type": "http", "request": {"url": "ftp://x"}}
    assert issues_of(with_task("b", bad)) == [
        "tasks.b.request.url: must be an http:// or https:// URL or an expression"
    ]
    good = with_task("b", {"type": "http", "request": {"url": "${ input.url }"}})
    assert compile_workflow(parse_definition(good)).tasks["b"].type == "http"


def test_http_expect_must_be_status_codes() -> None:
    """`expect` lists HTTP status codes."""
    task = {"type": "http", "request": {"url": "https://x"}, "expect": [200, 42]}
    assert issues_of(with_task("b", task)) == ["tasks.b.expect[1]: 42 is not an HTTP status code"]


@pytest.mark.parametrize(
    "task", [{"type": "sleep"}, {"type": "sleep", "duration": "1s", "until": "x"}]
)
def test_sleep_needs_exactly_one_of_duration_and_until(task: dict[str, Any]) -> None:
    """Neither or both of duration/until is an error at the task."""
    assert issues_of(with_task("b", task)) == [
        "tasks.b: a sleep task needs exactly one of duration and until"
    ]


def test_sleep_until_needs_an_offset() -> None:
    """`until` is RFC 3339 with an offset; a naive time is ambiguous."""
    (found,) = issues_of(with_task("b", {"type": "sleep", "until": "2030-01-01T00:00:00"}))
    assert found.startswith("tasks.b.until: '2030-01-01T00:00:00' is not an RFC 3339 time")


def test_sleep_compiles_duration_or_until() -> None:
    """A zero sleep is allowed, and `until` becomes an aware datetime."""
    data = {
        "name": "w",
        "tasks": {
            "nap": {"type": "sleep", "duration": 0},
            "wake": {"type": "sleep", "until": "2030-01-01T00:00:00Z"},
        },
    }
    workflow = compile_workflow(parse_definition(data))
    assert workflow.tasks["nap"].sleep_seconds == 0.0
    until = workflow.tasks["wake"].sleep_until
    assert until is not None
    assert until.utcoffset() is not None


def test_signal_name_defaults_to_the_task_id_and_must_be_url_safe() -> None:
    """A signal task waits for its own id unless `signal` names another, URL-safe, name."""
    data = with_task("approval", {"type": "signal", "timeout": "1h"})
    assert compile_workflow(parse_definition(data)).tasks["approval"].signal == "approval"
    assert issues_of(with_task("b", {"type": "signal", "signal": "a b"})) == [
        "tasks.b.signal: the signal name 'a b' may only use letters, digits, '_', '.' and '-'"
    ]


def test_map_needs_items_and_a_task() -> None:
    """A map without items or task reports both."""
    assert issues_of(with_task("b", {"type": "map"})) == [
        "tasks.b.items: required for a map task",
        "tasks.b.task: required for a map task",
    ]


def test_map_template_task_is_validated_and_has_no_after() -> None:
    """The map's task is checked like a task, at `tasks.<id>.task`, and may not use after."""
    task = {
        "type": "map",
        "items": "${ input.xs }",
        "task": {"after": ["a"], "type": "handler"},
        "concurrency": 0,
    }
    assert issues_of(with_task("b", task)) == [
        "tasks.b.task.after: not allowed on the task of a map",
        "tasks.b.task.handler: required for a handler task",
        "tasks.b.concurrency: must be at least 1",
    ]


def test_workflow_task_needs_a_workflow_name() -> None:
    """A child-run task names the workflow to start."""
    assert issues_of(with_task("b", {"type": "workflow", "version": 0})) == [
        "tasks.b.workflow: required for a workflow task",
        "tasks.b.version: must be at least 1",
    ]


@pytest.mark.parametrize(
    ("task", "issue"),
    [
        (
            {"type": "sleep", "duration": "1s", "handler": "h"},
            "tasks.b.handler: not allowed on a sleep task",
        ),
        ({"handler": "h", "duration": "1s"}, "tasks.b.duration: not allowed on a handler task"),
        ({"type": "signal", "queue": "fast"}, "tasks.b.queue: not allowed on a signal task"),
        ({"type": "signal", "input": {"x": 1}}, "tasks.b.input: not allowed on a signal task"),
        (
            {"type": "sleep", "duration": 1, "retry": {}},
            "tasks.b.retry: not allowed on a sleep task",
        ),
    ],
)
def test_fields_of_other_types_are_errors(task: dict[str, Any], issue: str) -> None:
    """A field that does not apply to the task's type is a mistake, not ignored."""
    assert issues_of(with_task("b", task)) == [issue]


def test_input_schema_must_be_a_valid_json_schema() -> None:
    """input_schema is checked against the Draft 2020-12 meta-schema."""
    (found,) = issues_of(with_task("b", {"handler": "h"}, input_schema={"type": "nope"}))
    assert found.startswith("input_schema.type: not a valid JSON Schema")


# --- digest and input ---------------------------------------------------------------


def test_digest_is_stable_and_content_sensitive() -> None:
    """Key order does not change the digest; any content change does."""
    shuffled = dict(reversed(list(copy.deepcopy(ORDER).items())))
    first, second = parse_definition(ORDER), parse_definition(shuffled)
    assert definition_digest(first) == definition_digest(second)
    assert len(definition_digest(first)) == 64
    changed = copy.deepcopy(ORDER)
    changed["tasks"]["ship"]["handler"] = "shipping.other"
    assert definition_digest(parse_definition(changed)) != definition_digest(first)


def test_valid_input_passes() -> None:
    """Input that matches the schema raises nothing."""
    workflow = compile_workflow(parse_definition(ORDER))
    validate_input(workflow, {"sku": "A-1", "qty": 2})


def test_input_errors_have_paths_under_input() -> None:
    """Every schema violation is an issue at `input.<path>`; a missing key points at itself."""
    workflow = compile_workflow(parse_definition(ORDER))
    with pytest.raises(InputInvalid) as caught:
        validate_input(workflow, {"qty": "two"})
    assert [str(i) for i in caught.value.issues] == [
        "input.sku: required",
        "input.qty: 'two' is not of type 'integer'",
    ]


def test_without_a_schema_any_input_is_accepted() -> None:
    """No input_schema means no input check."""
    workflow = compile_workflow(parse_definition(with_task("b", {"handler": "h"})))
    validate_input(workflow, ["anything", 1])
