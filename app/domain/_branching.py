"""Branches and joins: when a pending task runs, waits or is skipped, and the switch task.

Join rules (a task's `join`, Airflow's trigger rules) read the states of its `after` tasks:

| rule | runs when | skipped when |
|---|---|---|
| all_success (default) | every one completed | all finished, one did not complete |
| all_done | every one finished, in any state | never |
| none_failed | all finished, none failed (skipped is fine) | one failed |
| none_failed_min_one_success | as none_failed, and one completed | one failed, or none completed |
| one_success | as soon as one completed (the rest may still run) | all finished, none completed |

"Failed" is failed, timed out or cancelled. A task a `switch` names also needs that switch
to have completed and chosen it; otherwise it is skipped whatever its join rule, and so
are (under the default rule) the tasks after it. The switch evaluates its cases in order
when it is ready and completes at once with `{"case": <index> | "default" | null,
"tasks": [...]}`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from treadle.domain._run_draft import Draft, complete_task, expression_error, fail_task
from treadle.domain._task_rules import CompiledTask
from treadle.domain.errors import ExpressionError
from treadle.domain.expressions import is_truthy
from treadle.domain.state import TaskState, TaskStatus

_FAILED = frozenset({TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED})


@dataclass(frozen=True)
class Skip:
    """The task will never run: why, for its `task.skipped` history entry."""

    reason: str


RUN = "run"
WAIT = "wait"
Verdict = str | Skip
"""`RUN`, `WAIT`, or a `Skip`."""


def readiness(compiled: CompiledTask, tasks: Mapping[str, TaskState]) -> Verdict:
    """Whether a pending task runs now, waits for more of its dependencies, or is skipped."""
    for switch_id in compiled.switches:
        verdict = _chosen_by(compiled.id, switch_id, tasks.get(switch_id))
        if verdict != RUN:
            return verdict
    joined = [dep for dep in compiled.deps if dep not in compiled.switches]
    deps = [(dep, _status(tasks.get(dep))) for dep in joined]
    return _RULES[compiled.join](deps)


def _status(task: TaskState | None) -> TaskStatus:
    return TaskStatus.PENDING if task is None else task.status


def _chosen_by(task_id: str, switch_id: str, switch: TaskState | None) -> Verdict:
    status = _status(switch)
    if not status.is_terminal:
        return WAIT
    if status is not TaskStatus.COMPLETED:
        return Skip(f"switch '{switch_id}' is {status.value}")
    if switch is None or task_id not in chosen_tasks(switch.output):
        return Skip(f"switch '{switch_id}' chose another branch")
    return RUN


def chosen_tasks(output: Any) -> list[str]:
    """The tasks a completed switch chose, from its output."""
    if isinstance(output, dict) and isinstance(output.get("tasks"), list):
        return [str(task) for task in output["tasks"]]
    return []


Deps = Sequence[tuple[str, TaskStatus]]


def _all_success(deps: Deps) -> Verdict:
    if not _all_finished(deps):
        return WAIT
    other = next(((dep, s) for dep, s in deps if s is not TaskStatus.COMPLETED), None)
    return RUN if other is None else Skip(f"dependency '{other[0]}' is {other[1].value}")


def _all_done(deps: Deps) -> Verdict:
    return RUN if _all_finished(deps) else WAIT


def _none_failed(deps: Deps) -> Verdict:
    if not _all_finished(deps):
        return WAIT
    failed = next(((dep, s) for dep, s in deps if s in _FAILED), None)
    return RUN if failed is None else Skip(f"dependency '{failed[0]}' is {failed[1].value}")


def _none_failed_min_one_success(deps: Deps) -> Verdict:
    verdict = _none_failed(deps)
    if verdict == RUN and deps and not _any_completed(deps):
        return Skip("no dependency completed")
    return verdict


def _one_success(deps: Deps) -> Verdict:
    if not deps or _any_completed(deps):
        return RUN
    return Skip("no dependency completed") if _all_finished(deps) else WAIT


def _all_finished(deps: Deps) -> bool:
    return all(status.is_terminal for _, status in deps)


def _any_completed(deps: Deps) -> bool:
    return any(status is TaskStatus.COMPLETED for _, status in deps)


_RULES: dict[str, Callable[[Deps], Verdict]] = {
    "all_success": _all_success,
    "all_done": _all_done,
    "none_failed": _none_failed,
    "none_failed_min_one_success": _none_failed_min_one_success,
    "one_success": _one_success,
}


def start_switch(d: Draft, task_id: str, compiled: CompiledTask) -> None:
    """Evaluate the cases in order; the first that holds (or the default) is chosen."""
    context = d.context()
    case: int | str | None = None
    chosen: tuple[str, ...] = ()
    for index, branch in enumerate(compiled.cases):
        try:
            holds = is_truthy(branch.when.render(context))
        except ExpressionError as exc:
            fail_task(d, task_id, expression_error(exc))
            return
        if holds:
            case, chosen = index, branch.then
            break
    else:
        if compiled.default_targets:
            case, chosen = "default", compiled.default_targets
    d.update_task(
        task_id, status=TaskStatus.RUNNING, attempt=1, scheduled_at=d.now, started_at=d.now
    )
    d.record("task.started", task_id, 1, data={"case": case})
    complete_task(d, task_id, 1, {"case": case, "tasks": list(chosen)})
