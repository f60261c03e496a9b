"""Joins after branches (trigger rules) and the switch task, in the decider and at compile."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.domain._runs import Run, workflow
from treadle.domain import _branching as branching
from treadle.domain.compile import compile_workflow, definition_digest, parse_definition
from treadle.domain.errors import DefinitionInvalid
from treadle.domain.events import DispatchTask, RunStarted, TaskCompleted
from treadle.domain.state import RunStatus, TaskState, TaskStatus

R = "r1"


def dispatched(run: Run) -> list[str]:
    return [c.task_id for c in run.commands if isinstance(c, DispatchTask)]


def complete(run: Run, task_id: str, output: Any = None) -> None:
    run.apply(TaskCompleted(run_id=R, task_id=task_id, attempt=1, output=output))


def if_else(join: str | None) -> dict[str, Any]:
    """The usual shape: two `when` branches, then one task after both."""
    final: dict[str, Any] = {"handler": "h", "after": ["if_red", "if_blue"]}
    if join is not None:
        final["join"] = join
    return {
        "if_red": {"handler": "h", "when": "${ input.colour == 'red' }"},
        "if_blue": {"handler": "h", "when": "${ input.colour == 'blue' }"},
        "final": final,
    }


def test_default_join_skips_after_a_skipped_branch() -> None:
    """Without a join rule, a task after a skipped branch is skipped (all_success)."""
    run = Run(workflow(if_else(None), output="${ tasks.final.output }"), {"colour": "red"})
    run.apply(RunStarted(run_id=R))
    complete(run, "if_red", "r")
    assert run.status("final") == "skipped"
    assert run.state.status is RunStatus.COMPLETED


@pytest.mark.parametrize("join", ["none_failed", "all_done", "one_success"])
def test_join_after_if_else_runs_the_task_after_whichever_branch_ran(join: str) -> None:
    """With a join rule the task after an if/else runs once the branch taken completes."""
    run = Run(workflow(if_else(join), output="${ tasks.final.output }"), {"colour": "blue"})
    run.apply(RunStarted(run_id=R))
    assert dispatched(run) == ["if_blue"]
    assert run.status("if_red") == "skipped"
    complete(run, "if_blue", "b")
    assert dispatched(run) == ["final"]
    complete(run, "final", "done")
    assert run.state.status is RunStatus.COMPLETED
    assert run.state.output == "done"


def test_none_failed_min_one_success_skips_when_every_branch_was_skipped() -> None:
    """`none_failed_min_one_success` needs one completed dependency; `none_failed` does not."""
    tasks = if_else("none_failed_min_one_success")
    run = Run(workflow(tasks), {"colour": "green"})
    run.apply(RunStarted(run_id=R))
    assert run.status("final") == "skipped"
    tasks = if_else("none_failed")
    run = Run(workflow(tasks), {"colour": "green"})
    run.apply(RunStarted(run_id=R))
    assert dispatched(run) == ["final"]


def test_one_success_starts_before_the_other_dependencies_finish() -> None:
    """`one_success` fires on the first completed dependency, as Airflow's does."""
    tasks = {
        "fast": {"handler": "h"},
        "slow": {"handler": "h"},
        "first": {"handler": "h", "after": ["fast", "slow"], "join": "one_success"},
    }
    run = Run(workflow(tasks))
    run.apply(RunStarted(run_id=R))
    complete(run, "fast")
    assert dispatched(run) == ["first"]
    assert run.status("slow") == "scheduled"


def switch_tasks(default: list[str] | None = None) -> dict[str, Any]:
    route: dict[str, Any] = {
        "type": "switch",
        "cases": [
            {"when": "${ input.kind == 'a' }", "then": ["do_a"]},
            {"when": "${ input.kind == 'b' }", "then": ["do_b", "do_b2"]},
        ],
    }
    if default is not None:
        route["default"] = default
    return {
        "route": route,
        "do_a": {"handler": "h"},
        "do_b": {"handler": "h"},
        "do_b2": {"handler": "h"},
        "fallback": {"handler": "h"},
        "after_b": {"handler": "h", "after": ["do_b"]},
        "end": {
            "handler": "h",
            "after": ["do_a", "do_b2", "fallback"],
            "join": "none_failed",
        },
    }


def test_switch_runs_the_first_matching_case_and_skips_the_others() -> None:
    """The first case that holds runs its tasks; other cases' tasks and their dependents
    are skipped; a join after the branches runs."""
    run = Run(workflow(switch_tasks(["fallback"])), {"kind": "b"})
    run.apply(RunStarted(run_id=R))
    assert run.state.tasks["route"].output == {"case": 1, "tasks": ["do_b", "do_b2"]}
    assert sorted(dispatched(run)) == ["do_b", "do_b2"]
    assert [run.status(t) for t in ("do_a", "fallback")] == ["skipped", "skipped"]
    complete(run, "do_b")
    assert dispatched(run) == ["after_b"]
    complete(run, "do_b2")
    assert dispatched(run) == ["end"]


def test_switch_without_a_match_runs_the_default() -> None:
    """No case holds: the default tasks run and every case's tasks are skipped."""
    run = Run(workflow(switch_tasks(["fallback"])), {"kind": "z"})
    run.apply(RunStarted(run_id=R))
    assert run.state.tasks["route"].output == {"case": "default", "tasks": ["fallback"]}
    assert dispatched(run) == ["fallback"]
    assert run.status("after_b") == "skipped"
    reasons = {e.task_id: e.data["reason"] for e in run.history if e.type == "task.skipped"}
    assert reasons["do_b"] == "switch 'route' chose another branch"
    assert reasons["after_b"] == "dependency 'do_b' is skipped"


def test_switch_without_a_match_or_default_skips_every_branch() -> None:
    """No case and no default: nothing a case names runs; the run completes."""
    run = Run(workflow(switch_tasks()), {"kind": "z"})
    run.apply(RunStarted(run_id=R))
    assert run.state.tasks["route"].output == {"case": None, "tasks": []}
    assert dispatched(run) == ["fallback"]  # not named by the switch: it runs
    complete(run, "fallback")
    complete(run, "end")
    assert run.state.status is RunStatus.COMPLETED


def test_a_switch_case_expression_error_fails_the_run() -> None:
    """A case whose `when` cannot be evaluated fails the switch and so the run."""
    tasks = {
        "route": {"type": "switch", "cases": [{"when": "${ abs(input.x) }", "then": ["a"]}]},
        "a": {"handler": "h"},
    }
    run = Run(workflow(tasks), {"x": "text"})
    run.apply(RunStarted(run_id=R))
    assert run.status("route") == "failed"
    assert run.state.status is RunStatus.FAILED


def issues(definition_tasks: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition({"name": "w", "tasks": definition_tasks}))
    return {issue.path: issue.message for issue in caught.value.issues}


def test_switch_definitions_are_checked_with_paths() -> None:
    """Unknown, repeated and self targets, a non-expression case and misplaced fields are
    each reported at their path."""
    found = issues(
        {
            "route": {
                "type": "switch",
                "cases": [
                    {"when": "true", "then": ["a", "a"]},
                    {"when": "${ input.x }", "then": ["nope", "route"]},
                ],
                "default": ["ghost"],
                "handler": "h",
            },
            "a": {"handler": "h"},
            "b": {"handler": "h", "join": "all_done"},
        }
    )
    assert found == {
        "tasks.route.cases[0].when": "must be an expression written as ${ ... }",
        "tasks.route.cases[0].then[1]": "'a' is named twice",
        "tasks.route.cases[1].then[0]": "unknown task 'nope'",
        "tasks.route.cases[1].then[1]": "a switch cannot name itself",
        "tasks.route.default[0]": "unknown task 'ghost'",
        "tasks.route.handler": "not allowed on a switch task",
        "tasks.b.join": "a join rule needs the tasks it joins in after",
    }
    with pytest.raises(DefinitionInvalid) as caught:
        parse_definition({"name": "w", "tasks": {"c": {"handler": "h", "join": "sometimes"}}})
    assert [str(i) for i in caught.value.issues] == ["tasks.c.join: invalid enum value 'sometimes'"]


def test_a_switch_needs_a_case_and_cannot_name_its_own_upstream() -> None:
    """An empty switch is refused, and so is a case naming a task the switch waits for."""
    assert issues({"route": {"type": "switch", "cases": []}}) == {
        "tasks.route.cases": "a switch needs at least one case"
    }
    found = issues(
        {
            "a": {"handler": "h"},
            "route": {
                "type": "switch",
                "after": ["a"],
                "cases": [{"when": "${ `true` }", "then": ["a"]}],
            },
        }
    )
    assert list(found) == ["tasks.a.after"]
    assert "cycle" in found["tasks.a.after"]


def test_new_fields_unset_leave_an_older_definitions_digest_as_it_was() -> None:
    """`join`, `cases` and `default` unset (here and in a map's task) keep the digest a
    definition had before they existed, so re-registering it makes no new version."""
    tasks = {
        "a": {"handler": "h"},
        "m": {"type": "map", "items": "${ input }", "task": {"handler": "h"}},
    }
    before = "3a0a361489f850d4b12a956ef72e155bd9cea00657b75792c9eb4ef16acd6aa5"  # main, pre-change
    assert definition_digest(parse_definition({"name": "w", "tasks": tasks})) == before
    tasks["a"]["join"] = "all_success"
    assert definition_digest(parse_definition({"name": "w", "tasks": tasks})) == before


# --- the join rules, property by property -------------------------------------------

RULES = ["all_success", "all_done", "none_failed", "none_failed_min_one_success", "one_success"]
FAILED = {TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}


def _task(rule: str, deps: list[TaskStatus]) -> tuple[Any, dict[str, TaskState]]:
    ids = [f"d{i}" for i in range(len(deps))]
    tasks: dict[str, Any] = {dep: {"handler": "h"} for dep in ids}
    tasks["t"] = {"handler": "h", "after": ids, "join": rule}
    compiled = workflow(tasks).tasks["t"]
    states = {dep: TaskState(task_id=dep, status=s) for dep, s in zip(ids, deps, strict=True)}
    return compiled, states


@given(
    rule=st.sampled_from(RULES),
    deps=st.lists(st.sampled_from(list(TaskStatus)), min_size=1, max_size=5),
)
def test_join_rules_keep_their_promises(rule: str, deps: list[TaskStatus]) -> None:
    """Whatever the dependencies' states, a verdict never breaks its rule's promise."""
    compiled, states = _task(rule, deps)
    verdict = branching.readiness(compiled, states)
    finished = all(s.is_terminal for s in deps)
    completed = TaskStatus.COMPLETED in deps
    failed = any(s in FAILED for s in deps)
    if not finished:  # only one_success may decide before every dependency finished
        assert verdict == (branching.RUN if rule == "one_success" and completed else branching.WAIT)
        return
    expected_run = {
        "all_success": all(s is TaskStatus.COMPLETED for s in deps),
        "all_done": True,
        "none_failed": not failed,
        "none_failed_min_one_success": not failed and completed,
        "one_success": completed,
    }[rule]
    assert (verdict == branching.RUN) is expected_run
    assert (verdict == branching.RUN) or isinstance(verdict, branching.Skip)


@given(kind=st.sampled_from(["a", "b", "z"]), has_default=st.booleans())
def test_a_switch_runs_exactly_one_branch(kind: str, has_default: bool) -> None:
    """Whatever the input, only the chosen branch's tasks are dispatched, every other task
    the switch names is skipped, and finishing them completes the run."""
    run = Run(workflow(switch_tasks(["fallback"] if has_default else None)), {"kind": kind})
    run.apply(RunStarted(run_id=R))
    chosen = {"a": ["do_a"], "b": ["do_b", "do_b2"]}.get(kind, ["fallback"] if has_default else [])
    started = set(dispatched(run))
    named = {"do_a", "do_b", "do_b2", "fallback"} if has_default else {"do_a", "do_b", "do_b2"}
    assert started & named == set(chosen)
    assert all(run.status(t) == "skipped" for t in named - set(chosen))
    pending = list(started)
    while pending:
        complete(run, pending.pop(0))
        pending += dispatched(run)
    assert run.state.status is RunStatus.COMPLETED
