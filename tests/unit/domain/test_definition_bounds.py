"""Registration bounds a definition cannot get around: retry limits and the http default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.domain._runs import Run
from treadle.domain.compile import Limits, RetryPolicy, Workflow, compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid
from treadle.domain.events import RunStarted, TaskFailed, TimerFired, TimerKind
from treadle.domain.state import ErrorInfo, RunStatus

HTTP_REQUEST = {"method": "GET", "url": "https://shop.example/stock"}


def _workflow(tasks: dict[str, Any], limits: Limits | None = None, **top: Any) -> Workflow:
    return compile_workflow(parse_definition({"name": "w", "tasks": tasks, **top}), limits=limits)


def _issues(tasks: dict[str, Any], limits: Limits | None = None, **top: Any) -> list[str]:
    with pytest.raises(DefinitionInvalid) as caught:
        _workflow(tasks, limits, **top)
    return [str(issue) for issue in caught.value.issues]


# --- retry limits -------------------------------------------------------------------


def test_max_attempts_above_the_limit_is_refused_at_its_path() -> None:
    """A billion attempts is refused, naming limits.max_attempts; the limit itself is fine."""
    huge = {"a": {"handler": "h", "retry": {"max_attempts": 1_000_000_000}}}
    assert _issues(huge) == [
        "tasks.a.retry.max_attempts: must be at most 1000 (limits.max_attempts)"
    ]
    at_limit = _workflow({"a": {"handler": "h", "retry": {"max_attempts": 1000}}})
    assert at_limit.tasks["a"].retry.max_attempts == 1000


def test_max_attempts_limit_comes_from_the_configured_limits() -> None:
    """A smaller configured limit refuses what the default allows."""
    tasks = {"a": {"handler": "h", "retry": {"max_attempts": 6}}}
    assert _issues(tasks, Limits(max_attempts=5)) == [
        "tasks.a.retry.max_attempts: must be at most 5 (limits.max_attempts)"
    ]


def test_retry_intervals_below_the_floor_are_refused_at_their_paths() -> None:
    """A 1 ms initial or max interval would make retries a busy loop; both are refused."""
    retry = {"max_attempts": 3, "initial_interval": "1ms", "max_interval": "50ms"}
    assert _issues({"a": {"handler": "h", "retry": retry}}) == [
        "tasks.a.retry.initial_interval: must be at least 0.1s (limits.min_retry_interval_seconds)",
        "tasks.a.retry.max_interval: must be at least 0.1s (limits.min_retry_interval_seconds)",
    ]
    ok = {"max_attempts": 3, "initial_interval": "100ms", "max_interval": "100ms"}
    assert _workflow({"a": {"handler": "h", "retry": ok}}).tasks["a"].retry.initial_interval == 0.1


def test_the_task_of_a_map_has_the_same_retry_limits() -> None:
    """A map's item template is held to the limits too, at its own path."""
    template = {"handler": "h", "retry": {"max_attempts": 5000, "initial_interval": 0.001}}
    tasks = {"m": {"type": "map", "items": "${ input }", "task": template}}
    assert _issues(tasks) == [
        "tasks.m.task.retry.max_attempts: must be at most 1000 (limits.max_attempts)",
        "tasks.m.task.retry.initial_interval: must be at least 0.1s "
        "(limits.min_retry_interval_seconds)",
    ]


# --- the http default ---------------------------------------------------------------


def test_an_http_task_without_retry_gets_the_default_policy() -> None:
    """No retry block on http: 3 attempts, 1 s then doubling, capped at 30 s."""
    workflow = _workflow({"call": {"type": "http", "request": HTTP_REQUEST}})
    retry = workflow.tasks["call"].retry
    assert (retry.max_attempts, retry.initial_interval, retry.backoff, retry.max_interval) == (
        3,
        1.0,
        2.0,
        30.0,
    )
    assert [retry.delay(n) for n in (1, 2)] == [1.0, 2.0]


def test_an_explicit_retry_block_on_http_wins_and_handlers_keep_one_attempt() -> None:
    """The default is only for http tasks with no retry block; handler tasks still try once."""
    tasks = {
        "once": {"type": "http", "request": HTTP_REQUEST, "retry": {"max_attempts": 1}},
        "work": {"handler": "h"},
        "m": {
            "type": "map",
            "items": "${ input }",
            "task": {"type": "http", "request": HTTP_REQUEST},
        },
    }
    workflow = _workflow(tasks)
    assert workflow.tasks["once"].retry.max_attempts == 1
    assert workflow.tasks["work"].retry == RetryPolicy()
    assert workflow.tasks["m"].map_task is not None
    assert workflow.tasks["m"].map_task.retry.max_attempts == 3


def test_a_503_of_an_http_task_without_retry_is_retried_after_a_second() -> None:
    """A retryable http failure schedules attempt 2 after 1 s; the third failure fails the run."""
    run = Run(_workflow({"call": {"type": "http", "request": HTTP_REQUEST}}))
    run.apply(RunStarted(run_id="r1"))
    unavailable = ErrorInfo(
        type="HttpStatusError", message="503 Service Unavailable", retryable=True
    )
    for attempt, delay in ((1, 1.0), (2, 2.0)):
        run.apply(TaskFailed(run_id="r1", task_id="call", attempt=attempt, error=unavailable))
        assert run.kinds()[-1] == "task.retry_scheduled"
        assert run.history[-1].data["delay_seconds"] == delay
        run.apply(
            TimerFired(run_id="r1", kind=TimerKind.RETRY, task_id="call", attempt=attempt + 1)
        )
    run.apply(TaskFailed(run_id="r1", task_id="call", attempt=3, error=unavailable))
    assert run.state.status is RunStatus.FAILED


# --- references to tasks ------------------------------------------------------------


def test_a_reference_to_a_task_that_does_not_exist_is_refused_everywhere() -> None:
    """input, when, http request, map items and item template, and output are all checked."""
    tasks = {
        "a": {"handler": "h", "input": {"x": "${ tasks.nope.output }"}},
        "b": {"after": ["a"], "handler": "h", "when": "${ tasks.typo.output.go }"},
        "c": {"type": "http", "request": {"url": "https://x.example", "json": "${ tasks.c2 }"}},
        "m": {
            "type": "map",
            "items": "${ tasks.gone.output }",
            "task": {"handler": "h", "input": {"v": "${ [item, index, tasks.lost.output] }"}},
        },
    }
    assert _issues(tasks, output="${ length(tasks.missing.output) }") == [
        "tasks.a.input.x: expression 'tasks.nope.output': unknown task 'nope'",
        "tasks.b.when: expression 'tasks.typo.output.go': unknown task 'typo'",
        "tasks.c.request.json: expression 'tasks.c2': unknown task 'c2'",
        "tasks.m.items: expression 'tasks.gone.output': unknown task 'gone'",
        "tasks.m.task.input.v: expression '[item, index, tasks.lost.output]': unknown task 'lost'",
        "output: expression 'length(tasks.missing.output)': unknown task 'missing'",
    ]


def test_references_to_defined_tasks_and_to_fields_named_tasks_are_accepted() -> None:
    """Known ids (quoted, indexed, the task's own) pass; `input.tasks.x` and `&tasks.x` are data."""
    tasks = {
        "a-1": {"handler": "h", "input": "${ input.tasks.anything }"},
        "b": {
            "after": ["a-1"],
            "handler": "h",
            "input": {"x": '${ tasks."a-1".output[0] }', "own": "${ tasks.b.status }"},
            "when": "${ tasks.\"a-1\".status == 'completed' }",
        },
        "m": {
            "type": "map",
            "items": "${ input.list }",
            "task": {"handler": "h", "input": "${ map(&tasks.deep, [item]) }"},
        },
    }
    workflow = _workflow(tasks, output="${ tasks.m.output[?tasks.y] }")
    assert list(workflow.tasks) == ["a-1", "b", "m"]
