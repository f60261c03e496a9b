"""The `treadle` command: serve the engine, migrate, and drive workflows and runs over HTTP.

Commands that talk to a server go through a client port (`ApiClient`), so tests hand in
an in-process fake. Exit codes: 0 success, 1 failure (the server refused, a run did not
complete), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Protocol, TextIO

import msgspec

from app._cli_keys import add_keys_parser, keys_command
from app._cli_schedules import ScheduleClient, add_schedule_parser, schedule_command
from app._cli_values import shown_run
from app._yaml import YamlInvalid, YamlRefused, load_bounded
from app.client import DEFAULT_URL, ApiError, Client, TreadleUnreachable
from app.config import ConfigError, Settings, load_settings
from app.domain.errors import TreadleError
from app.domain.events import HistoryEntry
from app.modules.api import (
    HistoryPage,
    RunBody,
    RunPage,
    TaskBody,
    WorkflowDetail,
    WorkflowPage,
    WorkflowRef,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
POLL_SECONDS = 0.5
EXAMPLE_MODULE = "examples.quickstart"
ALL_ROLES = ("api", "orchestrator", "worker")
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})
STEERING = {
    "retry": "retry a failed run from its failed tasks",
    "pause": "pause a run: running tasks finish, nothing new starts",
    "resume": "resume a paused run",
}


class ApiClient(ScheduleClient, Protocol):
    """What the CLI needs from the API; `app.client.Client` is the real one."""

    def register_workflow(self, definition: dict[str, Any]) -> tuple[WorkflowRef, bool]: ...
    def list_workflows(self, *, limit: int | None = ..., cursor: str | None = ...) -> WorkflowPage: ...  # fmt: skip  # noqa: E501
    def get_workflow(self, name: str) -> WorkflowDetail: ...
    def start_run(
        self,
        workflow: str,
        input: Any = ...,
        *,
        version: int | None = ...,
        idempotency_key: str | None = ...,
    ) -> tuple[RunBody, bool]: ...
    def list_runs(
        self,
        *,
        workflow: str | None = ...,
        status: str | None = ...,
        idempotency_key: str | None = ...,
        created_after: str | None = ...,
        created_before: str | None = ...,
        limit: int | None = ...,
        cursor: str | None = ...,
    ) -> RunPage: ...
    def get_run(self, run_id: str) -> RunBody: ...
    def get_value(self, run_id: str, path: str) -> Any: ...
    def list_events(
        self, run_id: str, *, limit: int | None = ..., cursor: str | None = ...
    ) -> HistoryPage: ...
    def cancel_run(self, run_id: str, reason: str = ...) -> RunBody: ...
    def signal_run(self, run_id: str, name: str, payload: Any = ...) -> RunBody: ...
    def retry_run(self, run_id: str) -> RunBody: ...
    def pause_run(self, run_id: str) -> RunBody: ...
    def resume_run(self, run_id: str) -> RunBody: ...


class UsageError(Exception):
    """A mistake in the command line, found after argparse (exit 2)."""


class Console(msgspec.Struct, frozen=True, kw_only=True):
    """Where the CLI writes, and how it waits; tests replace all of it."""

    out: TextIO
    err: TextIO
    sleep: Callable[[float], None] = time.sleep
    tz: tzinfo | None = None
    """Time zone of printed times; None is the local one."""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    """The current time, for ages such as "heartbeat 3s ago"."""


# --- argument parsing -----------------------------------------------------------------


def json_argument(text: str) -> Any:
    """argparse `type=` for JSON values: the error names what is wrong with the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def roles_argument(text: str) -> set[str]:
    """argparse `type=` for `--roles api,worker`."""
    roles = {part.strip() for part in text.split(",") if part.strip()}
    unknown = roles - set(ALL_ROLES)
    if not roles or unknown:
        bad = ", ".join(sorted(unknown)) or "none given"
        msg = f"unknown role(s) {bad}; choose from {', '.join(ALL_ROLES)}"
        raise argparse.ArgumentTypeError(msg)
    return roles


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadle", description="Durable workflow orchestration.")
    parser.add_argument(
        "--url",
        default=os.environ.get("TREADLE_URL", DEFAULT_URL),
        help="the Treadle API (default: $TREADLE_URL or %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("TREADLE_API_KEY"),
        help="an API key sent as Authorization: Bearer (default: $TREADLE_API_KEY)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_serve(commands)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--config", help="a TOML settings file")
    _add_workflow(commands)
    _add_run(commands)
    add_schedule_parser(commands, json_argument)
    add_keys_parser(commands)
    return parser


def _add_serve(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run the engine (api, orchestrator, worker)")
    serve.add_argument("--roles", type=roles_argument, default=set(ALL_ROLES))
    serve.add_argument("--handlers", nargs="+", default=[], metavar="MODULE")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--config", help="a TOML settings file")
    serve.add_argument("--example", action="store_true", help="load the quick-start example")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve a non-loopback address without API keys (only behind a proxy that "
        "authenticates)",
    )


def _add_workflow(commands: Any) -> None:
    workflow = commands.add_parser("workflow", help="register and read workflow definitions")
    sub = workflow.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = sub.add_parser("apply", help="register a YAML/JSON file or a module:workflow")
    apply.add_argument("file", help="a YAML or JSON file, or module:attribute (a builder Workflow)")
    sub.add_parser("list", help="list workflows")
    sub.add_parser("get", help="show a workflow's latest definition").add_argument("name")


def _add_run(commands: Any) -> None:
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


# --- entry point ----------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    client_factory: Callable[[str], ApiClient] | None = None,
    console: Console | None = None,
) -> int:
    """Run the command line; returns the exit code."""
    console = console or Console(out=sys.stdout, err=sys.stderr)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return _execute(args, client_factory or _http_client(args.api_key), console)
    except (UsageError, TreadleError) as exc:
        message, code = explain(exc)
        return _fail(console, message, code)
    except KeyboardInterrupt:
        return 130


def _execute(
    args: argparse.Namespace, client_factory: Callable[[str], ApiClient], console: Console
) -> int:
    if args.command == "serve":
        return serve_command(args)
    if args.command == "migrate":
        return migrate_command(args)
    if args.command == "keys":
        return keys_command(args, settings_for(args), console.out, console.err)
    return dispatch(args, client_factory(args.url), console)


def explain(exc: Exception) -> tuple[str, int]:
    """The one line (and exit code) the CLI prints for an error."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ConfigError):
        return f"config {exc.key}: {exc.reason}", EXIT_USAGE
    if isinstance(exc, TreadleUnreachable):
        return f"cannot reach Treadle at {exc.url}: is `treadle serve` running?", EXIT_FAILED
    if isinstance(exc, ApiError):
        return _describe_problem(exc), EXIT_FAILED
    return str(exc), EXIT_FAILED


def _http_client(api_key: str | None) -> Callable[[str], ApiClient]:
    return lambda url: Client(url, api_key=api_key)


def _fail(console: Console, message: str, code: int = EXIT_FAILED) -> int:
    print(f"treadle: {message}", file=console.err)
    return code


def _describe_problem(exc: ApiError) -> str:
    line = f"{exc.title}: {exc.detail}" if exc.detail else exc.title
    issues = "; ".join(
        f"{e.get('path')}: {e.get('message')}" if e.get("path") else str(e.get("message"))
        for e in exc.errors
    )
    # The detail usually lists the issues already; repeat them only when it does not.
    return f"{line} ({issues})" if issues and issues not in line else line


def dispatch(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    """Run a `workflow` or `run` command against the API."""
    handlers: dict[tuple[str, str], Callable[[argparse.Namespace, ApiClient, Console], int]] = {
        ("workflow", "apply"): workflow_apply,
        ("workflow", "list"): workflow_list,
        ("workflow", "get"): workflow_get,
        ("run", "start"): run_start,
        ("run", "get"): run_get,
        ("run", "value"): run_value,
        ("run", "list"): run_list,
        ("run", "cancel"): run_cancel,
        ("run", "signal"): run_signal,
        ("run", "watch"): run_watch,
        ("run", "retry"): run_steer,
        ("run", "pause"): run_steer,
        ("run", "resume"): run_steer,
    }
    if args.command == "schedule":
        return schedule(args, client, console)
    return handlers[(args.command, args.action)](args, client, console)


# --- serve and migrate --------------------------------------------------------------------


def settings_for(args: argparse.Namespace) -> Settings:
    """Settings from the config file and environment, then the command-line overrides."""
    settings = load_settings(getattr(args, "config", None))
    api = settings.api
    if getattr(args, "host", None):
        api = msgspec.structs.replace(api, host=args.host)
    if getattr(args, "port", None) is not None:
        api = msgspec.structs.replace(api, port=args.port)
    auth = settings.auth
    if getattr(args, "insecure_no_auth", False):
        auth = msgspec.structs.replace(auth, allow_insecure=True)
    return msgspec.structs.replace(settings, api=api, auth=auth)


def serve_command(args: argparse.Namespace) -> int:
    import anyio  # noqa: PLC0415 -- the engine loads only for `serve` and `migrate`

    from app.observability import configure_logging  # noqa: PLC0415
    from app.serving.serve import serve  # noqa: PLC0415

    settings = settings_for(args)
    # JSON lines unless stdout is a terminal (log.format = auto), for every logger.
    configure_logging(settings.log, role=",".join(sorted(args.roles)))
    # Like uvicorn's --app-dir: `--handlers mypkg.tasks` works from a project folder.
    sys.path.insert(0, os.getcwd())
    modules = list(args.handlers)
    on_ready = None
    if args.example:
        modules.append(EXAMPLE_MODULE)
        on_ready = _register_definition(_example_definition())
    anyio.run(
        lambda: serve(settings, roles=set(args.roles), handler_modules=modules, on_ready=on_ready)
    )
    return EXIT_OK


def _example_definition() -> dict[str, Any]:
    module = importlib.import_module(EXAMPLE_MODULE)
    return read_definition(Path(str(module.__file__)).with_name("quickstart.yaml"))


def _register_definition(definition: dict[str, Any]) -> Callable[[Any], Any]:
    async def register(process: Any) -> None:
        await process.run_service.register_workflow(definition)

    return register


def migrate_command(args: argparse.Namespace) -> int:
    import anyio  # noqa: PLC0415

    from app.observability import strip_url_passwords  # noqa: PLC0415
    from app.wiring import migrate  # noqa: PLC0415

    settings = settings_for(args)
    anyio.run(migrate, settings)
    print(f"database at {strip_url_passwords(settings.database.url)} is migrated")
    return EXIT_OK


# --- workflow commands --------------------------------------------------------------------


def read_definition(path: Path) -> dict[str, Any]:
    """A definition from a YAML or JSON file (YAML is a superset, so one parser reads both)."""
    try:
        data = load_bounded(path)  # refuses alias bombs and oversized files
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except (YamlRefused, YamlInvalid) as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold one workflow definition (a mapping)")
    return data


def load_definition(target: str) -> dict[str, Any]:
    """A definition from a YAML/JSON file, or `module:attribute` naming a builder `Workflow`
    (or a dict) importable from the current directory."""
    path = Path(target)
    module_name, sep, attribute = target.partition(":")
    if path.exists() or not sep or not module_name or not attribute:
        return read_definition(path)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    found: Any = getattr(module, attribute, None)
    if hasattr(found, "to_definition"):
        found = found.to_definition()
    if not isinstance(found, dict):
        raise UsageError(f"{target} is not a workflow (a builder Workflow or a dict)")
    return found


def workflow_apply(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    ref, created = client.register_workflow(load_definition(args.file))
    verb = "registered" if created else "unchanged:"
    print(f"{verb} {ref.name} version {ref.version}", file=console.out)
    return EXIT_OK


def workflow_list(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    items = _all_pages(lambda cursor: client.list_workflows(cursor=cursor))
    rows = [("NAME", "VERSION", "CREATED")]
    rows.extend((i.name, str(i.version), _clock(i.created_at, console, full=True)) for i in items)
    _print_table(rows, console)
    return EXIT_OK


def workflow_get(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    _print_json(client.get_workflow(args.name), console)
    return EXIT_OK


# --- run commands -------------------------------------------------------------------------


def run_start(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    run, _ = client.start_run(
        args.name, args.input, version=args.version, idempotency_key=args.idempotency_key
    )
    if not args.wait:
        _print_json(shown_run(run), console)
        return EXIT_OK
    while run.status not in TERMINAL:
        console.sleep(POLL_SECONDS)
        run = client.get_run(run.id)
    _print_json(shown_run(run), console)
    return EXIT_OK if run.status == "completed" else EXIT_FAILED


def run_get(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    run = client.get_run(args.id)
    _print_json(shown_run(run), console)
    _print_heartbeats(run, console)
    return EXIT_OK


def run_value(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    _print_json(client.get_value(args.id, args.path), console)
    return EXIT_OK


def _print_heartbeats(run: RunBody, console: Console) -> None:
    """One line per task's last heartbeat, on stderr: stdout stays the run's JSON."""
    now = console.now()
    for task in run.tasks:
        line = heartbeat_line(task, now)
        if line:
            print(line, file=console.err)


def run_list(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
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
        created = _clock(run.created_at, console, full=True)
        rows.append((run.id, run.workflow, str(run.version), run.status, created))
    _print_table(rows, console)
    if page.next_cursor:
        print("(more runs: narrow with --workflow/--status or raise --limit)", file=console.out)
    return EXIT_OK


def run_cancel(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    run = client.cancel_run(args.id, args.reason)
    print(f"cancellation requested for run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def run_signal(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    run = client.signal_run(args.id, args.name, args.payload)
    print(f"signal {args.name} sent to run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def run_steer(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    """`run retry | pause | resume ID`: one POST, then the run's id and status."""
    steer = {"retry": client.retry_run, "pause": client.pause_run, "resume": client.resume_run}
    run = steer[args.action](args.id)
    verb = {"retry": "retrying", "pause": "paused", "resume": "resumed"}[args.action]
    print(f"{verb} run {run.id} (status {run.status})", file=console.out)
    return EXIT_OK


def schedule(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
    """`schedule ...`; a time zone with an interval is refused here, as the server ignores it."""
    if args.action == "create" and args.timezone and args.every:
        raise UsageError("--timezone applies to --cron only; an --every interval has no zone")
    return schedule_command(args, client, console.out)


def run_watch(args: argparse.Namespace, client: ApiClient, console: Console) -> int:
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

    def __init__(self, client: ApiClient, run_id: str) -> None:
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
    line = f"{_clock(entry.at, tz)}  {subject}  {verb}"
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


def _clock(at: datetime, tz: tzinfo | Console | None, *, full: bool = False) -> str:
    zone = tz.tz if isinstance(tz, Console) else tz
    local = at.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S" if full else "%H:%M:%S")


def _print_json(value: Any, console: Console) -> None:
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    print(text, file=console.out)


def _print_table(rows: Sequence[Sequence[str]], console: Console) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=console.out,
        )


def _all_pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


if __name__ == "__main__":
    sys.exit(main())
