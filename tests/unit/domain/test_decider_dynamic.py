"""Dynamic values: sleep, signal timeout, retry and map concurrency given as expressions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.unit.domain._runs import START, Run, workflow
from treadle.domain.compile import compile_workflow, parse_definition
from treadle.domain.errors import DefinitionInvalid
from treadle.domain.events import (
    CancelTimer,
    DispatchTask,
    RunStarted,
    SignalReceived,
    StartTimer,
    TaskFailed,
    TimerFired,
    TimerKind,
)
from treadle.domain.state import ErrorInfo, RunStatus

R = "r1"
BOOM = ErrorInfo(type="IOError", message="boom")


def timers(run: Run, kind: TimerKind) -> list[StartTimer]:
    return [c for c in run.commands if isinstance(c, StartTimer) and c.kind is kind]


@pytest.mark.parametrize(
    ("duration", "run_input", "seconds"),
    [
        ("${ input.delay }", {"delay": 90}, 90),
        ("${ input.delay }", {"delay": "1m30s"}, 90),
        ("${ input.delay }s", {"delay": 5}, 5),
    ],
)
def test_a_sleep_duration_from_the_input(duration: str, run_input: Any, seconds: int) -> None:
    """A sleep's duration expression is evaluated when it starts (a number or a text)."""
    run = Run(workflow({"nap": {"type": "sleep", "duration": duration}}), run_input)
    run.apply(RunStarted(run_id=R))
    [timer] = timers(run, TimerKind.SLEEP)
    assert timer.fire_at == START + timedelta(seconds=seconds)


def test_a_sleep_until_from_an_upstream_output() -> None:
    """`until` may read a task that ran before the sleep."""
    tasks = {"nap": {"type": "sleep", "until": "${ input.at }"}}
    run = Run(workflow(tasks), {"at": "2030-01-02T00:00:00+01:00"})
    run.apply(RunStarted(run_id=R))
    [timer] = timers(run, TimerKind.SLEEP)
    assert timer.fire_at == START + timedelta(hours=23)


@pytest.mark.parametrize(
    ("task", "run_input", "message"),
    [
        (
            {"type": "sleep", "duration": "${ input.d }"},
            {"d": {"s": 1}},
            "tasks.t.duration: an object is not a duration",
        ),
        (
            {"type": "sleep", "duration": "${ input.d }"},
            {"d": -3},
            "tasks.t.duration: duration -3 is negative",
        ),
        (
            {"type": "sleep", "until": "${ input.d }"},
            {"d": "tomorrow"},
            "tasks.t.until: 'tomorrow' is not an RFC 3339 time with an offset",
        ),
        (
            {"type": "signal", "timeout": "${ input.d }"},
            {"d": True},
            "tasks.t.timeout: True is not a duration",
        ),
        (
            {"handler": "h", "retry": {"max_attempts": "${ input.d }"}},
            {"d": 2.5},
            "tasks.t.retry.max_attempts: 2.5 is not a whole number",
        ),
        (
            {"handler": "h", "retry": {"max_attempts": "${ input.d }"}},
            {"d": 5000},
            "tasks.t.retry.max_attempts: 5000 is more than 1000 (limits.max_attempts)",
        ),
        (
            {"handler": "h", "retry": {"backoff": "${ input.d }"}},
            {"d": 0.5},
            "tasks.t.retry.backoff: 0.5 is less than 1",
        ),
        (
            {"handler": "h", "retry": {"initial_interval": "${ input.d }"}},
            {"d": "1ms"},
            "tasks.t.retry.initial_interval: 0.001s is shorter than 0.1s",
        ),
        (
            {
                "type": "map",
                "items": [1, 2],
                "task": {"handler": "h"},
                "concurrency": "${ input.d }",
            },
            {"d": 0},
            "tasks.t.concurrency: 0 is less than 1",
        ),
        (
            {
                "type": "map",
                "items": [1],
                "task": {"handler": "h", "retry": {"max_attempts": "${ input.d }"}},
            },
            {"d": "x"},
            "tasks.t.task.retry.max_attempts: 'x' is not a whole number",
        ),
    ],
)
def test_a_value_of_the_wrong_type_fails_the_task_before_it_starts(
    task: dict[str, Any], run_input: Any, message: str
) -> None:
    """A dynamic field evaluating to a value it cannot take fails the task (and the run)
    with the field's path, and nothing is dispatched or timed."""
    run = Run(workflow({"t": task}), run_input)
    run.apply(RunStarted(run_id=R))
    assert run.state.status is RunStatus.FAILED
    error = run.state.tasks["t"].error
    assert error is not None
    assert error.type == "InvalidValue"
    assert error.message.startswith(message)
    assert not any(isinstance(c, DispatchTask) for c in run.commands)


def test_a_signal_timeout_from_the_input_arms_and_drops_its_timer() -> None:
    """The timeout is armed at the evaluated length and dropped when the signal arrives."""
    run = Run(workflow({"wait": {"type": "signal", "timeout": "${ input.t }"}}), {"t": "2m"})
    run.apply(RunStarted(run_id=R))
    [timer] = timers(run, TimerKind.SIGNAL_TIMEOUT)
    assert timer.fire_at == START + timedelta(minutes=2)
    run.apply(SignalReceived(run_id=R, name="wait", payload={"ok": 1}))
    assert any(
        isinstance(c, CancelTimer) and c.kind is TimerKind.SIGNAL_TIMEOUT for c in run.commands
    )
    assert run.state.status is RunStatus.COMPLETED


def test_a_dynamic_signal_timeout_that_fires_says_how_long_it_waited() -> None:
    """The timed-out error names the evaluated timeout."""
    run = Run(workflow({"wait": {"type": "signal", "timeout": "${ input.t }"}}), {"t": 30})
    run.apply(RunStarted(run_id=R))
    run.apply(TimerFired(run_id=R, kind=TimerKind.SIGNAL_TIMEOUT, task_id="wait", attempt=1))
    error = run.state.tasks["wait"].error
    assert error is not None
    assert error.message == "signal 'wait' did not arrive within 30s"


def test_retry_fields_from_the_input_drive_the_retries() -> None:
    """max_attempts and the intervals from the input: the task tries that many times,
    waiting the evaluated backoff, then fails."""
    retry = {"max_attempts": "${ input.tries }", "initial_interval": "${ input.wait }"}
    run = Run(workflow({"a": {"handler": "h", "retry": retry}}), {"tries": 3, "wait": "7s"})
    run.apply(RunStarted(run_id=R))
    for attempt in (1, 2):
        run.apply(TaskFailed(run_id=R, task_id="a", attempt=attempt, error=BOOM))
        [timer] = timers(run, TimerKind.RETRY)
        assert timer.fire_at == run.now + timedelta(seconds=7 * 2 ** (attempt - 1))
        run.apply(TimerFired(run_id=R, kind=TimerKind.RETRY, task_id="a", attempt=attempt + 1))
    run.apply(TaskFailed(run_id=R, task_id="a", attempt=3, error=BOOM))
    assert run.state.status is RunStatus.FAILED
    assert run.state.tasks["a"].attempt == 3


def test_map_concurrency_from_the_input_caps_the_items_in_flight() -> None:
    """A map's concurrency expression sets how many items are dispatched at once."""
    tasks = {
        "each": {
            "type": "map",
            "items": "${ input.items }",
            "task": {"handler": "h"},
            "concurrency": "${ input.width }",
        }
    }
    run = Run(workflow(tasks), {"items": list(range(10)), "width": 3})
    run.apply(RunStarted(run_id=R))
    assert len([c for c in run.commands if isinstance(c, DispatchTask)]) == 3
    assert run.state.tasks["each"].progress is not None
    assert run.state.tasks["each"].progress.concurrency == 3


def issues(task: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition({"name": "w", "tasks": {"t": task}}))
    return {issue.path: issue.message for issue in caught.value.issues}


@pytest.mark.parametrize(
    ("task", "path", "message"),
    [
        (
            {"handler": "h", "timeout": "${ input.t }"},
            "tasks.t.timeout",
            "only allowed in a signal",
        ),
        (
            {"handler": "h", "retry": {"max_attempts": "five"}},
            "tasks.t.retry.max_attempts",
            "a number or an expression",
        ),
        (
            {"handler": "h", "retry": {"backoff": "${ input.[ }"}},
            "tasks.t.retry.backoff",
            "does not parse",
        ),
        (
            {"type": "sleep", "duration": "${ tasks.nope.output }"},
            "tasks.t.duration",
            "unknown task 'nope'",
        ),
        (
            {"type": "map", "items": [1], "task": {"handler": "h"}, "concurrency": "many"},
            "tasks.t.concurrency",
            "a number or an expression",
        ),
        ({"type": "signal", "timeout": "${ }"}, "tasks.t.timeout", "the expression is empty"),
    ],
)
def test_a_bad_dynamic_value_is_refused_at_registration(
    task: dict[str, Any], path: str, message: str
) -> None:
    """Registration checks each dynamic field's expression, at the field's own path."""
    found = issues(task)
    assert path in found
    assert message in found[path]
