"""Expressions have a CPU budget in cost units, per evaluation and per decision."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest
from jmespath import functions as jmespath_functions

from treadle.domain.compile import Limits, compile_workflow, parse_definition
from treadle.domain.decider import decide, new_run
from treadle.domain.errors import DefinitionInvalid, ExpressionBudgetExceeded
from treadle.domain.events import RunStarted
from treadle.domain.expressions import compile_template
from treadle.domain.state import RunStatus

NOW = datetime(2030, 1, 1, tzinfo=UTC)
BIG = list(range(100_000))

# The budget is counted in work, not seconds, so these tests count the work done (sorts
# run, elements read) rather than time it: a busy CI machine cannot make them flaky.


@pytest.fixture
def sorts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The length of every list JMESPath's sort() really sorts."""
    done: list[int] = []

    def counting_sorted(values: Iterable[Any]) -> list[Any]:
        ordered = sorted(values)
        done.append(len(ordered))
        return ordered

    # sort() calls the builtin through its module's globals, where this name now comes first.
    monkeypatch.setattr(jmespath_functions, "sorted", counting_sorted, raising=False)
    return done


class _CountedReads(dict[str, Any]):
    """A dict that counts the field reads JMESPath makes on it (its `get`)."""

    reads = 0

    def get(self, key: str, default: Any = None) -> Any:
        _CountedReads.reads += 1
        return super().get(key, default)


def test_sorting_a_huge_list_fails_fast_with_the_key_named(sorts: list[int]) -> None:
    """sort() of 100,000 integers is over the default budget and fails before sorting."""
    template = compile_template("${ length(sort(input.a)) }")
    with pytest.raises(ExpressionBudgetExceeded) as caught:
        template.render({"input": {"a": BIG}})
    assert sorts == []  # refused from its size, before any work
    assert caught.value.key == "limits.max_expression_cost"
    assert "limits.max_expression_cost" in str(caught.value)


def test_a_projection_over_a_huge_list_stops_at_the_budget() -> None:
    """A projection is charged per element and stops well before the end of the list."""
    template = compile_template("${ input.a[*].x }")
    elements = [_CountedReads(x=i) for i in BIG]
    _CountedReads.reads = 0
    with pytest.raises(ExpressionBudgetExceeded):
        template.render({"input": {"a": elements}})
    assert 0 < _CountedReads.reads < len(BIG) // 2


def test_ordinary_work_stays_under_the_budget() -> None:
    """Sorting 5,000 numbers and reading a 100,000-element input are fine."""
    assert compile_template("${ sort(input.a)[0] }").render({"input": {"a": BIG[:5000]}}) == 0
    assert len(compile_template("${ input.a }").render({"input": {"a": BIG}})) == 100_000


def test_many_evaluations_in_one_decision_share_one_budget(sorts: list[int]) -> None:
    """300 sorts of 2,000 integers in one decision fail the run after a few of them."""
    tasks = {f"t{i}": {"handler": "h", "input": "${ length(sort(input.a)) }"} for i in range(300)}
    workflow = compile_workflow(parse_definition({"name": "w", "tasks": tasks}))
    state = new_run(workflow, run_id="r", version=1, input={"a": BIG[:2000]}, now=NOW)
    decision = decide(workflow, state, RunStarted(run_id="r"), NOW)
    assert 0 < len(sorts) < 300 // 5  # the decision's budget, not each task's, ran out
    assert decision.state.status is RunStatus.FAILED
    failed = [t for t in decision.state.tasks.values() if t.error is not None]
    assert failed[0].error is not None
    assert failed[0].error.type == "ExpressionLimit"
    assert failed[0].error.retryable is False
    assert "limits.max_decision_expression_cost" in failed[0].error.message


def test_the_same_input_passed_to_many_tasks_is_measured_once_per_decision() -> None:
    """300 tasks taking `${ input }` of 100,000 elements all start in one decision."""
    tasks = {f"t{i}": {"handler": "h", "input": "${ input }"} for i in range(300)}
    workflow = compile_workflow(parse_definition({"name": "w", "tasks": tasks}))
    state = new_run(workflow, run_id="r", version=1, input=BIG, now=NOW)
    decision = decide(workflow, state, RunStarted(run_id="r"), NOW)
    assert decision.state.status is RunStatus.RUNNING
    assert len(decision.commands) == 300


def test_a_static_expression_over_the_budget_is_refused_at_registration() -> None:
    """An expression reading no run data that is too much work is a DefinitionInvalid."""
    source = "${ length(sort(`" + str(list(range(3000))) + "`)) }"
    data = {"name": "w", "tasks": {"a": {"handler": "h", "input": {"n": source}}}}
    with pytest.raises(DefinitionInvalid) as caught:
        compile_workflow(parse_definition(data), limits=Limits(max_expression_cost=10_000))
    [issue] = caught.value.issues
    assert issue.path == "tasks.a.input.n"
    assert "limits.max_expression_cost" in issue.message


def test_a_map_of_the_largest_allowed_list_renders_every_item() -> None:
    """Item inputs are budgeted one by one, not together: 100,000 items all start."""
    item_task = {"handler": "h", "input": {"x": "${ item }", "i": "${ index }"}}
    tasks = {"m": {"type": "map", "items": "${ input }", "concurrency": 2, "task": item_task}}
    workflow = compile_workflow(parse_definition({"name": "w", "tasks": tasks}))
    state = new_run(workflow, run_id="r", version=1, input=BIG, now=NOW)
    decision = decide(workflow, state, RunStarted(run_id="r"), NOW)
    assert decision.state.status is RunStatus.RUNNING
    assert len(decision.state.map_items) == 100_000
