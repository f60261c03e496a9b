"""A tiny driver for decider tests: holds one run, applies events, keeps what came out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from treadle.domain.compile import Workflow, compile_workflow, parse_definition
from treadle.domain.decider import decide, new_run
from treadle.domain.events import Command, Decision, Event, HistoryEntry
from treadle.domain.state import RunState

START = datetime(2030, 1, 1, tzinfo=UTC)


def workflow(tasks: dict[str, Any], **top: Any) -> Workflow:
    """Compile a workflow named `w` with these tasks (and top-level fields)."""
    return compile_workflow(parse_definition({"name": "w", "tasks": tasks, **top}))


class Run:
    """One run of a workflow, stepped by events at a clock the test moves."""

    def __init__(self, wf: Workflow, run_input: Any = None) -> None:
        self.workflow = wf
        self.now = START
        self.state: RunState = new_run(wf, run_id="r1", version=1, input=run_input, now=START)
        self.last: Decision = Decision(state=self.state)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def apply(self, event: Event) -> Decision:
        self.last = decide(self.workflow, self.state, event, self.now)
        self.state = self.last.state
        return self.last

    @property
    def commands(self) -> list[Command]:
        return list(self.last.commands)

    @property
    def history(self) -> list[HistoryEntry]:
        return list(self.last.history)

    def kinds(self) -> list[str]:
        """The history types of the last decision, in order."""
        return [entry.type for entry in self.last.history]

    def status(self, task_id: str) -> str:
        return self.state.tasks[task_id].status.value
