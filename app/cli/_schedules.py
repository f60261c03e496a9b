"""`treadle schedule create | list | pause | resume | delete`: schedules, over the API.

The JSON argument type is handed in by `treadle.cli`, which builds the parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import msgspec

from treadle.api_types import ScheduleBody
from treadle.cli._console import Console, UsageError

if TYPE_CHECKING:
    from treadle.client import Client

OVERLAP = ("skip", "allow", "cancel_previous")
CATCH_UP = ("skip", "run_once")


def add_schedule_parser(commands: Any, json_type: Callable[[str], Any]) -> None:
    """The `schedule` command and its actions; `json_type` parses `--input`."""
    schedule = commands.add_parser("schedule", help="start runs on a cron or an interval")
    sub = schedule.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="create a schedule and print it as JSON")
    create.add_argument("--workflow", required=True)
    trigger = create.add_mutually_exclusive_group(required=True)
    trigger.add_argument("--cron", metavar="EXPR", help="a cron expression, e.g. '0 * * * *'")
    trigger.add_argument("--every", metavar="DURATION", help="an interval, e.g. 30s, 5m, 1h")
    create.add_argument("--timezone", metavar="TZ", help="IANA zone of --cron (default UTC)")
    create.add_argument("--input", type=json_type, default=None, metavar="JSON")
    create.add_argument("--name", help="unique name (default: the workflow's name)")
    create.add_argument("--overlap", choices=OVERLAP, help="a run still going at a tick")
    create.add_argument("--catch-up", choices=CATCH_UP, help="ticks missed while down")
    sub.add_parser("list", help="list schedules by name")
    for action, text in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again from the next tick"),
        ("delete", "delete a schedule (its runs stay)"),
    ):
        sub.add_parser(action, help=text).add_argument("id")


def schedule_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The `POST /v1/schedules` body for `schedule create`; unset options keep the defaults."""
    spec: dict[str, Any] = {
        "name": args.name or args.workflow,
        "workflow": args.workflow,
        "input": args.input,
        "cron": args.cron,
        "timezone": args.timezone,
        "interval": args.every,
        "overlap": args.overlap,
        "catch_up": args.catch_up,
    }
    # Options left unset take the server's defaults.
    return {k: v for k, v in spec.items() if v is not None}


def schedule_command(args: argparse.Namespace, client: Client, out: TextIO) -> int:
    """Run one `schedule` action against the API; returns the exit code."""
    if args.action == "create":
        _print_json(client.create_schedule(schedule_spec(args)), out)
    elif args.action == "list":
        _print_schedules(_every_schedule(client), out)
    elif args.action == "pause":
        found = client.pause_schedule(args.id)
        print(f"paused schedule {found.id} ({found.name})", file=out)
    elif args.action == "resume":
        found = client.resume_schedule(args.id)
        print(f"resumed schedule {found.id} ({found.name}); next at {found.next_fire_at}", file=out)
    else:
        client.delete_schedule(args.id)
        print(f"deleted schedule {args.id}", file=out)
    return 0


def _every_schedule(client: Client) -> list[ScheduleBody]:
    found: list[ScheduleBody] = []
    cursor: str | None = None
    while True:
        page = client.list_schedules(cursor=cursor)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _trigger(s: ScheduleBody) -> str:
    if s.cron is not None:
        return f"cron {s.cron} ({s.timezone})"
    return f"every {s.interval_seconds:g}s"


def _print_schedules(schedules: Sequence[ScheduleBody], out: TextIO) -> None:
    rows = [("ID", "NAME", "WORKFLOW", "TRIGGER", "STATE", "NEXT")]
    rows.extend(
        (
            s.id,
            s.name,
            s.workflow,
            _trigger(s),
            "paused" if s.paused else "active",
            s.next_fire_at.isoformat(timespec="seconds"),
        )
        for s in schedules
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _print_json(value: Any, out: TextIO) -> None:
    print(msgspec.json.format(msgspec.json.encode(value), indent=2).decode(), file=out)


def schedule(args: argparse.Namespace, client: Client, console: Console) -> int:
    """`schedule ...`; a time zone with an interval is refused here, as the server ignores it."""
    if args.action == "create" and args.timezone and args.every:
        raise UsageError("--timezone applies to --cron only; an --every interval has no zone")
    return schedule_command(args, client, console.out)
