"""The `treadle` command: serve the engine, migrate, and drive workflows and runs over HTTP.

Commands that talk to a server take an `treadle.client.Client` (tests hand in an in-process
fake shaped like it). Only light modules load up front (argparse, the API's bodies in
`treadle.api_types`): the HTTP client loads when a command needs the API, and the engine only
for `serve`, `migrate` and `keys`, so `treadle --help` answers at once. Exit codes:
0 success, 1 failure (the server refused, a run did not complete), 2 usage or
configuration error, 130 interrupted, 141 the reader of stdout went away (`| head`).

Output: `-o table|json|jsonl` on every command; without it a terminal gets tables and
colour (rich, loaded only then) and a pipe gets each command's script format (see
`treadle.cli._output`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from treadle.api_types import DEFAULT_URL
from treadle.cli._completion import SHELLS, complete_if_asked, completion_command
from treadle.cli._console import EXIT_FAILED, EXIT_USAGE, Console, UsageError, json_argument
from treadle.cli._keys import add_keys_parser, keys_command
from treadle.cli._output import add_output_option
from treadle.cli._runs import (
    add_run_parser,
    format_entry,
    heartbeat_line,
    run_cancel,
    run_describe,
    run_get,
    run_history,
    run_list,
    run_signal,
    run_start,
    run_steer,
    run_value,
    run_watch,
)
from treadle.cli._schedules import add_schedule_parser, schedule
from treadle.cli._serve import add_serve_parser, migrate_command, serve_command, settings_for
from treadle.cli._workflows import add_workflow_parser, workflow_apply, workflow_get, workflow_list
from treadle.config import ConfigError
from treadle.domain.errors import TreadleError

if TYPE_CHECKING:
    from treadle.client import ApiError, Client

__all__ = [
    "EXIT_CLOSED_PIPE",
    "Console",
    "UsageError",
    "build_parser",
    "dispatch",
    "explain",
    "format_entry",
    "heartbeat_line",
    "main",
    "settings_for",
]


EXIT_CLOSED_PIPE = 141
"""128 + SIGPIPE: what a shell reports for a command whose reader went away (`| head`)."""
NO_OUTPUT_FORMAT = frozenset({"serve", "completion"})
"""Commands with no result to print (serve logs; completion prints a shell script)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="treadle", description="Durable workflow orchestration.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
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
    add_output_option(parser, root=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_serve_parser(commands)
    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--config", help="a TOML settings file")
    add_workflow_parser(commands)
    add_run_parser(commands)
    add_schedule_parser(commands, json_argument)
    add_keys_parser(commands)
    completion = commands.add_parser(
        "completion", help="print a shell completion script (bash, zsh or fish)"
    )
    completion.add_argument("shell", choices=SHELLS)
    for name, command in commands.choices.items():
        if name not in NO_OUTPUT_FORMAT:
            for leaf in _leaves(command):
                add_output_option(leaf)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers of `parser`'s actions (`run list`, ...), or itself when it has none."""
    # argparse has no public way to walk its sub-parsers.
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not actions:
        yield parser
    for action in actions:
        for child in action.choices.values():
            yield from _leaves(child)


class _Version(argparse.Action):
    """`--version`: the installed distribution's version, read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        kwargs.update(nargs=0, default=argparse.SUPPRESS)
        super().__init__(option_strings, argparse.SUPPRESS, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(f"treadle {installed_version()}")
        parser.exit()


def installed_version() -> str:
    """The version pip installed (pyproject's `version`), or `unknown` from a bare source tree."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("treadle")
    except PackageNotFoundError:
        return "unknown (not installed)"


# --- entry point ----------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    client_factory: Callable[[str], Client] | None = None,
    console: Console | None = None,
) -> int:
    """Run the command line; returns the exit code."""
    console = console or Console(out=sys.stdout, err=sys.stderr)
    parser = build_parser()
    complete_if_asked(parser)  # the shell's tab key: prints completions and exits
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error (or --help, --version)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code = _execute(args, client_factory or _http_client(args.api_key), console)
        console.out.flush()  # a closed pipe shows here, not at the interpreter's exit
    except BrokenPipeError:
        return _reader_gone(console)
    except (UsageError, TreadleError) as exc:
        message, code = explain(exc)
        return _fail(console, message, code)
    except KeyboardInterrupt:
        return 130
    return code


def _reader_gone(console: Console) -> int:
    """`treadle run list | head`: the reader left, so stop quietly, as `cat` would."""
    if console.out is sys.stdout:
        # What is still buffered would fail again when Python flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return EXIT_CLOSED_PIPE


def _execute(
    args: argparse.Namespace, client_factory: Callable[[str], Client], console: Console
) -> int:
    if args.command == "serve":
        return serve_command(args)
    if args.command == "migrate":
        return migrate_command(args, console)
    if args.command == "keys":
        return keys_command(args, settings_for(args), console.out, console.err)
    if args.command == "completion":
        return completion_command(args.shell, console.out)
    return dispatch(args, client_factory(args.url), console)


def explain(exc: Exception) -> tuple[str, int]:
    """The one line (and exit code) the CLI prints for an error."""
    if isinstance(exc, UsageError):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ConfigError):
        return f"config {exc.key}: {exc.reason}", EXIT_USAGE
    # Only the client raises these, so it is loaded by the time one is to be explained.
    from treadle.client import ApiError, TreadleUnreachable  # noqa: PLC0415

    if isinstance(exc, TreadleUnreachable):
        return f"cannot reach Treadle at {exc.url}: is `treadle serve` running?", EXIT_FAILED
    if isinstance(exc, ApiError):
        return _describe_problem(exc), EXIT_FAILED
    return str(exc), EXIT_FAILED


def _http_client(api_key: str | None) -> Callable[[str], Client]:
    def connect(url: str) -> Client:
        # httpx (and its own CLI's rich) loads only for a command that calls the API.
        from treadle.client import Client  # noqa: PLC0415

        return Client(url, api_key=api_key)

    return connect


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


def dispatch(args: argparse.Namespace, client: Client, console: Console) -> int:
    """Run a `workflow` or `run` command against the API."""
    handlers: dict[tuple[str, str], Callable[[argparse.Namespace, Client, Console], int]] = {
        ("workflow", "apply"): workflow_apply,
        ("workflow", "list"): workflow_list,
        ("workflow", "get"): workflow_get,
        ("run", "start"): run_start,
        ("run", "get"): run_get,
        ("run", "describe"): run_describe,
        ("run", "value"): run_value,
        ("run", "list"): run_list,
        ("run", "cancel"): run_cancel,
        ("run", "signal"): run_signal,
        ("run", "watch"): run_watch,
        ("run", "history"): run_history,
        ("run", "retry"): run_steer,
        ("run", "pause"): run_steer,
        ("run", "resume"): run_steer,
    }
    if args.command == "schedule":
        return schedule(args, client, console)
    return handlers[(args.command, args.action)](args, client, console)
