"""`treadle run start | get | describe | value | list | cancel | signal | watch | history`, and
`run retry | pause | resume`."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec

from treadle.api_types import HistoryPage, RunBody, RunPage, RunSummaryBody, TaskBody
from treadle.cli._console import (
    EXIT_FAILED,
    EXIT_OK,
    TERMINAL,
    Console,
    clock,
    json_argument,
    json_file_argument,
    print_json,
    print_jsonl,
)
from treadle.cli._describe import describe
from treadle.cli._output import (
    add_paging,
    chosen_format,
    print_data,
    read_pages,
    show_line,
    show_list,
    show_result,
    show_table,
    status_style,
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
    start = sub.add_parser("start", help="start a run: its id on a terminal, else its JSON")
    start.add_argument("name")
    _add_json_input(start, "--input", "--input-file", "input", "the run's input")
    start.add_argument("--version", type=int)
    start.add_argument("--idempotency-key")
    start.add_argument(
        "--tag", action="append", type=tag_argument, metavar="KEY:VALUE", help="repeatable"
    )
    start.add_argument("--wait", action="store_true", help="wait for the run to end")
    sub.add_parser("get", help="print a run (JSON when piped)").add_argument("id")
    describe = sub.add_parser(
        "describe", help="a run for people: tasks, attempts, durations, errors, waiting-for"
    )
    describe.add_argument("id")
    value = sub.add_parser("value", help="print one value a run's JSON elided as too large")
    value.add_argument("id")
    value.add_argument(
        "path", help="input, output, error, tasks/TASK/output, tasks/TASK[INDEX]/input ..."
    )
    listing = sub.add_parser("list", help="list runs, newest first (one page unless --all)")
    listing.add_argument("--workflow")
    listing.add_argument("--status")
    listing.add_argument("--idempotency-key", metavar="KEY")
    listing.add_argument("--created-after", metavar="TIME", help="RFC 3339, inclusive")
    listing.add_argument("--created-before", metavar="TIME", help="RFC 3339, exclusive")
    listing.add_argument(
        "--tag",
        action="append",
        type=tag_argument,
        metavar="KEY:VALUE",
        help="only runs with this tag; repeat for runs with all of them",
    )
    add_paging(listing, every_page_by_default=False)
    cancel = sub.add_parser("cancel", help="cancel a run")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="")
    signal = sub.add_parser("signal", help="send a signal to a run")
    signal.add_argument("id")
    signal.add_argument("name")
    _add_json_input(signal, "--payload", "--payload-file", "payload", "the signal's payload")
    sub.add_parser("watch", help="follow a run's history until it ends").add_argument("id")
    history = sub.add_parser("history", help="print a run's history, oldest first")
    history.add_argument("id")
    add_paging(history, every_page_by_default=True)
    for action, text in STEERING.items():
        sub.add_parser(action, help=text).add_argument("id")


def _add_json_input(
    parser: argparse.ArgumentParser, flag: str, file_flag: str, dest: str, what: str
) -> None:
    given = parser.add_mutually_exclusive_group()
    given.add_argument(flag, type=json_argument, default=None, metavar="JSON", help=what)
    given.add_argument(
        file_flag,
        type=json_file_argument,
        dest=dest,
        metavar="FILE",
        help=f"{what} from a JSON (or .yaml) file; - reads stdin",
    )


def run_start(args: argparse.Namespace, client: Client, console: Console) -> int:
    tags = {"tags": dict(args.tag)} if args.tag else {}
    run, _ = client.start_run(
        args.name, args.input, version=args.version, idempotency_key=args.idempotency_key, **tags
    )
    fmt = chosen_format(args, console, "json")
    if fmt == "table":
        _started(args, run, console)
    if args.wait:
        run = wait_for_end(client, run)
    if fmt != "table":
        print_data(fmt, shown_run(run), console)
    elif args.wait:
        describe(run, _history(client, run.id, console), console)
    return EXIT_FAILED if args.wait and run.status != "completed" else EXIT_OK


def wait_for_end(client: Client, run: RunBody) -> RunBody:
    """The run once it has ended, by the API's long poll (no busy polling)."""
    while run.status not in TERMINAL:
        run = client.get_run(run.id, wait=LONG_POLL_SECONDS)
    return run


def _started(args: argparse.Namespace, run: RunBody, console: Console) -> None:
    show_line(console, f"started run {run.id} ({run.workflow} v{run.version})", "bold")
    print(f"  dashboard  {dashboard_url(args.url, run.id)}", file=console.out)
    if args.wait:
        print(
            "  waiting    for it to end (Ctrl-C stops the waiting, not the run)", file=console.out
        )
    else:
        print(f"  follow     treadle run watch {run.id}", file=console.out)
    console.out.flush()


def dashboard_url(api_url: str, run_id: str) -> str:
    """The run's page in the dashboard the API serves at `/ui`."""
    return f"{api_url.rstrip('/')}/ui#/runs/{quote(run_id, safe='')}"


def run_get(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.get_run(args.id)
    fmt = chosen_format(args, console, "json")
    if fmt == "table":
        describe(run, _history(client, run.id, console), console)
        return EXIT_OK
    print_data(fmt, shown_run(run), console)
    _print_heartbeats(run, console)
    return EXIT_OK


def run_describe(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.get_run(args.id)
    show_result(
        args,
        console,
        shown_run(run),
        lambda: describe(run, _history(client, run.id, console), console),
    )
    return EXIT_OK


HISTORY_PAGES_READ = 20
"""Pages of history `describe` reads for its attempts (a long map run has many more)."""


def _history(client: Client, run_id: str, console: Console) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    cursor: str | None = None
    for _ in range(HISTORY_PAGES_READ):
        page = client.list_events(run_id, cursor=cursor)
        entries.extend(page.items)
        if page.next_cursor is None:
            return entries
        cursor = page.next_cursor
    print(
        f"note: attempts are shown from the first {len(entries)} history entries; "
        f"`treadle run history {run_id}` has them all",
        file=console.err,
    )
    return entries


def run_value(args: argparse.Namespace, client: Client, console: Console) -> int:
    value = client.get_value(args.id, args.path)
    show_result(args, console, value, lambda: print_json(value, console), piped="json")
    return EXIT_OK


def _print_heartbeats(run: RunBody, console: Console) -> None:
    """One line per task's last heartbeat, on stderr: stdout stays the run's JSON."""
    now = console.now()
    for task in run.tasks:
        line = heartbeat_line(task, now)
        if line:
            print(line, file=console.err)


def tag_argument(text: str) -> tuple[str, str]:
    """`--tag key:value` as (key, value)."""
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"must be KEY:VALUE, got {text!r}")
    return key, value


def tags_text(tags: dict[str, str]) -> str:
    """Tags as `k:v, k:v` for a table or a description."""
    return ", ".join(f"{k}:{v}" for k, v in tags.items())


def run_list(args: argparse.Namespace, client: Client, console: Console) -> int:
    filters: dict[str, Any] = {
        "workflow": args.workflow,
        "status": args.status,
        "idempotency_key": args.idempotency_key,
        "created_after": args.created_after,
        "created_before": args.created_before,
    }
    if args.tag:
        filters["tags"] = dict(args.tag)

    def fetch(limit: int | None, cursor: str | None) -> RunPage:
        # The cursor only when there is one: a first page is asked exactly as before.
        paging: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return client.list_runs(**filters, **paging)

    def table(runs: Sequence[RunSummaryBody]) -> None:
        rows = [
            (
                r.id,
                r.workflow,
                str(r.version),
                r.status,
                clock(r.created_at, console, full=True),
                tags_text(r.tags),
            )
            for r in runs
        ]
        header = ("ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "TAGS")
        show_table(console, header, rows, status_column=3)

    show_list(args, console, read_pages(args, fetch, every_page_by_default=False), table, "runs")
    return EXIT_OK


def run_cancel(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.cancel_run(args.id, args.reason)
    line = f"cancellation requested for run {run.id} (status {run.status})"
    show_result(args, console, shown_run(run), lambda: show_line(console, line, "yellow"))
    return EXIT_OK


def run_signal(args: argparse.Namespace, client: Client, console: Console) -> int:
    run = client.signal_run(args.id, args.name, args.payload)
    line = f"signal {args.name} sent to run {run.id} (status {run.status})"
    show_result(args, console, shown_run(run), lambda: show_line(console, line))
    return EXIT_OK


def run_steer(args: argparse.Namespace, client: Client, console: Console) -> int:
    """`run retry | pause | resume ID`: one POST, then the run's id and status."""
    steer = {"retry": client.retry_run, "pause": client.pause_run, "resume": client.resume_run}
    run = steer[args.action](args.id)
    verb = {"retry": "retrying", "pause": "paused", "resume": "resumed"}[args.action]
    line = f"{verb} run {run.id} (status {run.status})"
    show_result(args, console, shown_run(run), lambda: show_line(console, line))
    return EXIT_OK


LONG_POLL_SECONDS = 25.0
"""How long one `GET /v1/runs/{id}?wait=` may hold (under the client's 30 s timeout)."""
WATCH_POLL_SECONDS = 1.0
"""`watch` asks again this often: the long poll answers at once when the run ends, but not
for each new history entry, so new entries show within this long."""


def run_history(args: argparse.Namespace, client: Client, console: Console) -> int:
    """The run's history: one line per entry (as `watch` prints them), or JSON."""

    def fetch(limit: int | None, cursor: str | None) -> HistoryPage:
        return client.list_events(args.id, limit=limit, cursor=cursor)

    def lines(entries: Sequence[HistoryEntry]) -> None:
        for entry in entries:
            show_line(console, format_entry(entry, console.tz), _entry_style(entry))

    listed = read_pages(args, fetch, every_page_by_default=True)
    show_list(args, console, listed, lines, "history")
    return EXIT_OK


def run_watch(args: argparse.Namespace, client: Client, console: Console) -> int:
    """Print each new history entry until the run ends; 0 only if it completed."""
    fmt = chosen_format(args, console, "table")
    follower = HistoryFollower(client, args.id)
    status = client.get_run(args.id).status
    while True:
        # The status is read before the history: entries written before a terminal
        # status are then certain to be printed by this drain, before we exit.
        for entry in follower.new_entries():
            if fmt == "table":
                show_line(console, format_entry(entry, console.tz), _entry_style(entry))
            else:  # a stream: json and jsonl are both one entry per line
                print_jsonl([entry], console)
                console.out.flush()
        if status in TERMINAL:
            if fmt == "table":
                show_line(console, f"run {args.id} {status}", status_style(status))
            return EXIT_OK if status == "completed" else EXIT_FAILED
        status = client.get_run(args.id, wait=WATCH_POLL_SECONDS).status


def _entry_style(entry: HistoryEntry) -> str | None:
    verb = entry.type.partition(".")[2]
    return status_style(verb) or ("red" if verb in {"timed_out", "retry_scheduled"} else None)


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
