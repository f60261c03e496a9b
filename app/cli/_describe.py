"""`treadle run describe`: a run for people — its tasks, each attempt with its duration
and error, and what the run is waiting for.

The run's JSON has each task's latest attempt only; the earlier ones (and what a running
task waits on: a signal's name, a sleep's end, a retry's backoff) come from its history.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from treadle.api_types import RunBody, TaskBody
from treadle.cli._console import TERMINAL, Console, clock
from treadle.cli._output import rich_console, status_style, styled
from treadle.domain.events import HistoryEntry

if TYPE_CHECKING:
    from rich.table import Table

ENDINGS = frozenset({"completed", "failed", "timed_out", "cancelled"})
VALUE_SHOWN = 200
"""Characters of an input, output or error message shown (`run get` has them whole)."""


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt of a task, as its history tells it."""

    number: int
    outcome: str = "running"
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    started: Any = None
    """The `task.started` entry's data: `{signal}`, `{until}` or `{worker}`."""
    retry_at: datetime | None = None
    """When the next attempt is due, if this one ended in a retry."""


def attempts_by_task(history: Iterable[HistoryEntry]) -> dict[str, list[Attempt]]:
    """Each task's attempts, oldest first, from the run's history."""
    found: dict[tuple[str, int], Attempt] = {}
    for entry in history:
        kind, _, verb = entry.type.partition(".")
        if kind != "task" or entry.task_id is None or not entry.attempt:
            continue
        key = (entry.task_id, entry.attempt)
        attempt = found.get(key) or Attempt(number=entry.attempt)
        data = entry.data if isinstance(entry.data, dict) else {}
        if verb == "started":
            attempt = msgspec.structs.replace(attempt, started_at=entry.at, started=data)
        elif verb in ENDINGS:
            error = _error_line(data.get("error"))
            attempt = msgspec.structs.replace(
                attempt, outcome=verb, ended_at=entry.at, error=error or attempt.error
            )
        elif verb == "retry_scheduled" and entry.attempt > 1:
            # Recorded with the next attempt's number: the previous one is what failed.
            previous = found.get((entry.task_id, entry.attempt - 1))
            if previous is not None:
                due = _when(data.get("fire_at"))
                found[(entry.task_id, entry.attempt - 1)] = msgspec.structs.replace(
                    previous, retry_at=due
                )
            continue
        else:
            continue
        found[key] = attempt
    attempts: dict[str, list[Attempt]] = {}
    for (task_id, _), attempt in sorted(found.items()):
        attempts.setdefault(task_id, []).append(attempt)
    return attempts


def waiting_for(run: RunBody, attempts: dict[str, list[Attempt]], now: datetime) -> list[str]:
    """What a run that has not ended waits on, one line each; [] once it has ended."""
    if run.status in TERMINAL:
        return []
    if run.status == "pending":
        return ["an orchestrator to start it"]
    waits = [f"a resume: the run is paused (treadle run resume {run.id})"] if run.paused else []
    for task in run.tasks:
        history = attempts.get(task.task_id, [])
        if task.status == "running":
            waits.append(_running(task, history[-1] if history else None, now))
        elif task.status == "scheduled":
            retry = next((a.retry_at for a in reversed(history) if a.retry_at), None)
            if retry is not None and retry > now:
                waits.append(f"task {task.task_id}: its retry at {_stamp(retry)}")
            else:
                waits.append(f"task {task.task_id}: a worker to take attempt {task.attempt}")
    return waits


def _running(task: TaskBody, attempt: Attempt | None, now: datetime) -> str:
    started = attempt.started if attempt is not None and attempt.started else {}
    subject = f"task {task.task_id}"
    if task.type == "signal":
        return f"{subject}: signal {started.get('signal', task.task_id)!r}"
    if task.type == "sleep":
        until = _when(started.get("until"))
        return f"{subject}: its timer, due {_stamp(until)}" if until else f"{subject}: its timer"
    if task.type == "workflow" and task.child_run_id:
        return f"{subject}: child run {task.child_run_id}"
    if task.progress is not None:
        p = task.progress
        done = p.completed + p.failed
        return f"{subject}: {done} of {p.total} items done, {p.in_flight} in flight"
    line = f"{subject}: attempt {task.attempt} running"
    if task.started_at is not None:
        line += f" for {duration(now - task.started_at)}"
    if task.heartbeat is not None:
        line += f", last heartbeat {duration(now - task.heartbeat.at)} ago"
    return line


def describe(run: RunBody, history: Sequence[HistoryEntry], console: Console) -> None:
    """Print the run for people (colour on a terminal)."""
    now = console.now()
    attempts = attempts_by_task(history)
    out = rich_console(console)
    title = styled(f"run {run.id}  ", "bold")
    title.append(f"{run.workflow} v{run.version}  ")
    title.append(run.status, status_style(run.status) or "")
    if run.paused:
        title.append(" (paused)", "yellow")
    out.print(title)
    for label, value in _facts(run, console, now):
        line = styled("")
        line.append(f"  {label:<10}", "dim")
        line.append(value)
        out.print(line)
    if run.error is not None:
        line = styled("")
        line.append(f"  {'error':<10}", "dim")
        line.append(_cut(f"{run.error.type}: {run.error.message}"), "red")
        out.print(line)
    waits = waiting_for(run, attempts, now)
    if waits:
        out.print(styled("waiting for", "bold"))
        for wait in waits:
            out.print(f"  {wait}")
    if run.tasks:
        out.print(_task_table(run.tasks, attempts, console, now))


def _facts(run: RunBody, console: Console, now: datetime) -> list[tuple[str, str]]:
    facts = [("created", clock(run.created_at, console, full=True))]
    if run.started_at is not None:
        facts.append(("started", clock(run.started_at, console, full=True)))
    if run.finished_at is not None:
        facts.append(("finished", clock(run.finished_at, console, full=True)))
    if run.started_at is not None:
        took = (run.finished_at or now) - run.started_at
        facts.append(("took" if run.finished_at else "elapsed", duration(took)))
    if run.idempotency_key:
        facts.append(("key", run.idempotency_key))
    if run.tags:
        facts.append(("tags", ", ".join(f"{k}:{v}" for k, v in run.tags.items())))
    if run.parent_run_id:
        facts.append(("parent", f"run {run.parent_run_id} task {run.parent_task_id}"))
    facts.append(("input", _value(run.input)))
    if run.output is not None:
        facts.append(("output", _value(run.output)))
    return facts


def _task_table(
    tasks: Sequence[TaskBody], attempts: dict[str, list[Attempt]], console: Console, now: datetime
) -> Table:
    from rich import box  # noqa: PLC0415 -- only for human output
    from rich.table import Table  # noqa: PLC0415

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for name in ("TASK", "TYPE", "STATUS", "ATTEMPT", "STARTED", "DURATION"):
        table.add_column(name, no_wrap=True)
    table.add_column("ERROR", overflow="fold", ratio=1)  # takes what the others leave
    for task in tasks:
        earlier = [a for a in attempts.get(task.task_id, []) if a.number < task.attempt]
        for attempt in earlier:
            table.add_row(
                styled(f"{task.task_id}", "dim"),
                "",
                styled(attempt.outcome, status_style(attempt.outcome)),
                str(attempt.number),
                _at(attempt.started_at, console),
                _took(attempt.started_at, attempt.ended_at, now),
                styled(attempt.error or "", "red" if attempt.error else None),
            )
        error = _cut(f"{task.error.type}: {task.error.message}") if task.error else ""
        table.add_row(
            task.task_id,
            task.type,
            styled(task.status, status_style(task.status)),
            str(task.attempt) if task.attempt else "-",
            _at(task.started_at, console),
            _took(task.started_at, task.finished_at, now),
            styled(error, "red" if error else None),
        )
    return table


def duration(elapsed: timedelta) -> str:
    """`0.42s`, `12.5s`, `2m 5s`, `1h 1m` (never negative: clocks drift a little)."""
    seconds = max(0.0, elapsed.total_seconds())
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, whole = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {whole}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def _took(started: datetime | None, ended: datetime | None, now: datetime) -> str:
    if started is None:
        return "-"
    return duration((ended or now) - started) + ("" if ended else " so far")


def _at(at: datetime | None, console: Console) -> str:
    return clock(at, console) if at is not None else "-"


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _error_line(error: Any) -> str | None:
    if not isinstance(error, dict) or not error.get("message"):
        return None
    return _cut(f"{error.get('type', 'error')}: {error['message']}")


def _value(value: Any) -> str:
    return _cut(value if isinstance(value, str) else msgspec.json.encode(value).decode())


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_SHOWN else text[: VALUE_SHOWN - 1] + "…"
