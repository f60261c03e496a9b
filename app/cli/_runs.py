"""`treadle run start | get | value | list | cancel | signal | watch | retry | pause | resume`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

import msgspec

from treadle.api_types import RunBody, TaskBody
from treadle.cli._console import (
    EXIT_FAILED,
    EXIT_OK,
    POLL_SECONDS,
    TERMINAL,
    Console,
    clock,
    json_argument,
    print_json,
    print_table,
)
from treadle.cli._values import shown_run
from treadle.domain.events import HistoryEntry

if TYPE_CHECKING:
    from treadle.client import Client

STEERING = {
    "retry": "retry a failed run from its failed tasks",
    "pause": "pause a run: running tasks finish, nothing new starts",
    "resume": "resume a paused run",
}


def add_run_parser(commands: Any) -> None:
    run = commands.add_parser("run", help="start, inspect and steer runs")
    sub = run.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = sub.add_parser("start", help="start a run and print it as JSON")
    start.add_argument("name")
    start.add_argument("--input", type=json_argument, default=None, metavar="JSON")
    start.add_argument("--version", type=int)
    start.add_argument("--idempotency-key")
    start.add_argument("--wait", action="store_true", help="wait for the run to end")
    sub.add_parser("get", help="print a run as JSON").add_argument("id")
    value = sub.add_parser("value", help="print one value a run's JSON elided as too large")
    value.add_argument("id")
    value.add_argument(
        "path", help="input, output, error, tasks/TASK/output, tasks/TASK[INDEX]/input ..."
    )
    listing = sub.add_parser("list", help="list runs, newest first")
    listing.add_argument("--workflow")
    listing.add_argument("--status")
    listing.add_argument("--idempotency-key", metavar="KEY")
    listing.add_argument("--created-after", metavar="TIME", help="RFC 3339, inclusive")
    listing.add_argument("--created-before", metavar="TIME", help="RFC 3339, exclusive")
    listing.add_argument("--limit", type=int)
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="")
    signal = sub.add_parser("signal", help="send a signal to a run")
    signal.add_argument("id")
    signal.add_argument("name")
    signal.add_argument("--payload", type=json_argument, default=None, metavar="JSON")
    sub.add_parser("watch", help="follow a run's history until it ends").add_argument("id")
    for action, text in STEERING.items():
        sub.add_parser(action, help=text).add_argument("id")


def run_start(args: argparse.Namespace, client: Client, console: Console) -> int:
    run, _ = client.start_run(
        args.name, args.input, version=args.version, idempotency_key=args.idempotency_key
    )
    if not args.wait:
        print_json(shown_run(run), console)
        return EXIT_OK
    while run.status not in TERMINAL:
        console.sleep(POLL_SECONDS)
        run = client.get_run(run.id)
    print_json(shown_run(run), console)
    return EXIT_OK if run.status == "completed" else EXIT_FAILED


def run_get(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.get_run(args.id)
    print_json(shown_run(run), console)
    _print_heartbeats(run, console)
    return EXIT_OK


def run_value(args: argparse.Namespace, client: Client, console: Console) -> int:
    print_json(client.get_value(args.id, args.path), console)
    return EXIT_OK


def _print_heartbeats(run: RunBody, console: Console) -> None:
    """One line per task's last heartbeat, on stderr: stdout stays the run's JSON."""
    now = console.now()
    for task in run.tasks:
        line = heartbeat_line(task, now)
        if line:
            print(line, file=console.err)


def run_list(args: argparse.Namespace, client: Client, console: Console) -> int:
    page = client.list_runs(
        workflow=args.workflow,
        status=args.status,
        idempotency_key=args.idempotency_key,
        created_after=args.created_after,
        created_before=args.created_before,
        limit=args.limit,
    )
    rows = [("ID", "WORKFLOW", "VERSION", "STATUS", "CREATED")]
    for run in page.items:
        created = clock(run.created_at, console, full=True)
        rows.append((run.id, run.workflow, str(run.version), run.status, created))
    print_table(rows, console)
    if page.next_cursor:
        print("(more runs: narrow with --workflow/--status or raise --limit)", file=console.out)
    return EXIT_OK


def run_cancel(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.cancel_run(args.id, args.reason)
    print(f"cancellation requested for run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def run_signal(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.signal_run(args.id, args.name, args.payload)
    print(f"signal {args.name} sent to run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def run_steer(args: argparse.Namespace, client: Client, console: Console) -> int:
    """`run retry | pause | resume ID`: one POST, then the run's id and status."""
    steer = {"retry": client.retry_run, "pause": client.pause_run, "resume": client.resume_run}
    run = steer[args.action](args.id)
    verb = {"retry": "retrying", "pause": "paused", "resume": "resumed"}[args.action]
    print(f"{verb} run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def run_watch(args: argparse.Namespace, client: Client, console: Console) -> int:
    """Print each new history entry until the run ends; 0 only if it completed."""
    follower = HistoryFollower(client, args.id)
    while True:
        # Read the status first: history written before a terminal status is then
        # certain to be printed by the drain below, before we exit.
        status = client.get_run(args.id).status
        for entry in follower.new_entries():
            print(format_entry(entry, console.tz), file=console.out, flush=True)
        if status in TERMINAL:
            print(f"run {args.id} {status}", file=console.out)
            return EXIT_OK if status == "completed" else EXIT_FAILED
        console.sleep(POLL_SECONDS)


class HistoryFollower:
    """Reads a run's history a page at a time, yielding each entry once.

    The last page has no `next_cursor`, so the follower keeps the cursor that produced it
    and how many of its entries it already yielded, and skips those on the next poll.
    """

    def __init__(self, client: Client, run_id: str) -> None:
        self._client = client
        self._run_id = run_id
        self._cursor: str | None = None
        self._seen = 0

    def new_entries(self) -> Iterator[HistoryEntry]:
        while True:
            page = self._client.list_events(self._run_id, cursor=self._cursor)
            yield from page.items[self._seen :]
            if page.next_cursor is None:
                self._seen = max(self._seen, len(page.items))
                return
            self._cursor, self._seen = page.next_cursor, 0


# --- output ---------------------------------------------------------------------------------


def format_entry(entry: HistoryEntry, tz: tzinfo | None = None) -> str:
    """One human line per history entry, e.g. `18:42:01  task reserve  completed (attempt 1)`."""
    kind, _, verb = entry.type.partition(".")
    verb = verb.replace("_", " ") or kind
    data = entry.data if isinstance(entry.data, dict) else {}
    if kind == "task":
        subject = f"task {entry.task_id}"
    elif kind == "signal":
        subject = f"signal {data.get('name', '')}".rstrip()
    else:
        subject = kind
    line = f"{clock(entry.at, tz)}  {subject}  {verb}"
    if entry.attempt:
        line += f" (attempt {entry.attempt})"
    return line + _entry_detail(data)


HEARTBEAT_DETAILS_SHOWN = 200
"""Characters of heartbeat details `run get` prints on a line (the JSON has them all)."""


def heartbeat_line(task: TaskBody, now: datetime) -> str | None:
    """`task fetch  heartbeat 3s ago (attempt 2): {"done": 3}`; None before the first beat."""
    beat = task.heartbeat
    if beat is None:
        return None
    line = f"task {task.task_id}  heartbeat {_age(now - beat.at)} ago (attempt {beat.attempt})"
    if beat.details is None:
        return line
    details = msgspec.json.encode(beat.details).decode()
    if len(details) > HEARTBEAT_DETAILS_SHOWN:
        details = details[: HEARTBEAT_DETAILS_SHOWN - 1] + "…"
    return f"{line}: {details}"


def _age(elapsed: timedelta) -> str:
    # Never negative: the server's clock may run a little ahead of ours.
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes}m"


def _entry_detail(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return f": {error.get('type', 'error')}: {error['message']}"
    if data.get("reason"):
        return f": {data['reason']}"
    return ""
