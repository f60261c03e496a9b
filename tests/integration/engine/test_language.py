"""The workflow language end to end on a real store: joins after branches, a switch,
string interpolation and dynamic values, run by the real worker and orchestrator."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.engine.conftest import SettingsFactory
from tests.integration.engine.test_engine import finished, running
from treadle.domain.errors import DefinitionInvalid
from treadle.domain.state import RunStatus, TaskStatus
from treadle.wiring import build

ROUTED: dict[str, Any] = {
    "name": "routed",
    "tasks": {
        "route": {
            "type": "switch",
            "cases": [
                {"when": "${ input.kind == 'book' }", "then": ["book"]},
                {"when": "${ input.kind == 'film' }", "then": ["film"]},
            ],
            "default": ["other"],
        },
        "book": {"handler": "t.echo", "input": {"label": "book ${ input.id }"}},
        "film": {"handler": "t.echo", "input": {"label": "film ${ input.id }"}},
        "other": {"handler": "t.echo", "input": {"label": "other ${ input.id }"}},
        "gift": {
            "handler": "t.echo",
            "when": "${ input.gift }",
            "input": {"label": "wrapped"},
        },
        "final": {
            "handler": "t.echo",
            "after": ["book", "film", "other", "gift"],
            "join": "none_failed",
            "input": {
                "summary": (
                    "${ input.id }: ${ tasks.book.output.label || tasks.film.output.label"
                    " || tasks.other.output.label } (gift: ${ tasks.gift.status })"
                )
            },
        },
    },
    "output": "${ tasks.final.output.summary }",
}


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "chosen", "summary"),
    [
        ("film", "film", "42: film 42 (gift: skipped)"),
        ("toy", "other", "42: other 42 (gift: skipped)"),
    ],
)
async def test_a_switch_then_a_join_runs_one_branch_and_continues(
    make_settings: SettingsFactory, kind: str, chosen: str, summary: str
) -> None:
    """Only the chosen branch runs, the others and a false `when` are skipped, and the
    task after them all runs (none_failed) with its interpolated input."""
    async with running(build(make_settings())) as engine:
        await engine.run_service.register_workflow(ROUTED)
        run, _ = await engine.run_service.start_run("routed", None, {"kind": kind, "id": 42})
        done = await finished(engine, run.id)

    assert done.status is RunStatus.COMPLETED
    assert done.output == summary
    branches = {t: done.tasks[t].status for t in ("book", "film", "other")}
    assert branches == {
        t: TaskStatus.COMPLETED if t == chosen else TaskStatus.SKIPPED for t in branches
    }
    assert done.tasks["gift"].status is TaskStatus.SKIPPED
    assert done.tasks["route"].output == {
        "case": 1 if kind == "film" else "default",
        "tasks": [chosen],
    }


DYNAMIC: dict[str, Any] = {
    "name": "dynamic",
    "tasks": {
        "nap": {"type": "sleep", "duration": "${ input.nap }"},
        "flaky": {
            "after": ["nap"],
            "handler": "t.flaky",
            "input": {"succeed_on": "${ input.tries }"},
            "retry": {
                "max_attempts": "${ input.tries }",
                "initial_interval": "${ input.wait }",
                "backoff": "${ `1` }",
            },
        },
        "each": {
            "after": ["flaky"],
            "type": "map",
            "items": "${ input.items }",
            "concurrency": "${ input.width }",
            "task": {"handler": "t.add", "input": {"a": "${ item }", "b": 1}},
        },
    },
    "output": {"attempts": "${ tasks.flaky.output }", "each": "${ tasks.each.output }"},
}


@pytest.mark.anyio
async def test_dynamic_sleep_retry_and_concurrency_come_from_the_input(
    make_settings: SettingsFactory,
) -> None:
    """A sleep of the input's length, retries as many as the input says, and a map
    capped by the input's width run to completion."""
    run_input = {"nap": "200ms", "tries": 3, "wait": "100ms", "items": [1, 2, 3, 4], "width": 2}
    async with running(build(make_settings())) as engine:
        await engine.run_service.register_workflow(DYNAMIC)
        run, _ = await engine.run_service.start_run("dynamic", None, run_input)
        done = await finished(engine, run.id)
        history = await engine.store.list_history(run.id, 200, None)

    assert done.status is RunStatus.COMPLETED, done.error
    assert done.output == {"attempts": 3, "each": [2, 3, 4, 5]}
    nap = done.tasks["nap"]
    assert nap.started_at is not None
    assert nap.finished_at is not None
    assert (nap.finished_at - nap.started_at).total_seconds() >= 0.2
    retries = [h for h in history.items if h.type == "task.retry_scheduled"]
    assert [h.data["delay_seconds"] for h in retries] == [0.1, 0.1]
    started = next(h for h in history.items if h.type == "task.started" and h.task_id == "each")
    assert started.data["concurrency"] == 2


@pytest.mark.anyio
async def test_a_dynamic_value_of_the_wrong_type_fails_the_run_clearly(
    make_settings: SettingsFactory,
) -> None:
    """A sleep whose duration evaluates to an object fails the run, naming the field."""
    async with running(build(make_settings())) as engine:
        await engine.run_service.register_workflow(DYNAMIC)
        run, _ = await engine.run_service.start_run("dynamic", None, {"nap": {"s": 1}})
        done = await finished(engine, run.id)

    assert done.status is RunStatus.FAILED
    error = done.tasks["nap"].error
    assert error is not None
    assert error.type == "InvalidValue"
    assert error.message == "tasks.nap.duration: an object is not a duration"


@pytest.mark.anyio
async def test_registration_refuses_each_kind_of_mistake_with_its_path(
    make_settings: SettingsFactory,
) -> None:
    """A malformed interpolation, a switch naming an unknown task and a bad dynamic value
    are all refused at registration, each at its path."""
    bad = {
        "name": "bad",
        "tasks": {
            "route": {"type": "switch", "cases": [{"when": "${ input.a }", "then": ["ghost"]}]},
            "get": {"type": "http", "request": {"url": "https://x.example/${ input.id"}},
            "nap": {"type": "sleep", "duration": "${ input.[ }"},
        },
    }
    engine = build(make_settings())
    await engine.store.migrate()
    await engine.connect()
    try:
        with pytest.raises(DefinitionInvalid) as caught:
            await engine.run_service.register_workflow(bad)
    finally:
        await engine.close()
    assert sorted(issue.path for issue in caught.value.issues) == [
        "tasks.get.request.url",
        "tasks.nap.duration",
        "tasks.route.cases[0].then[0]",
    ]
