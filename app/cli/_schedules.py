"""`treadle schedule create | list | update | trigger | backfill | cancel-backfill | pause |
resume | delete`: schedules, over the API.

The JSON argument type is handed in by `treadle.cli`, which builds the parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from treadle.api_types import ScheduleBody
from treadle.cli._console import Console, UsageError, json_file_argument
from treadle.cli._output import (
    add_paging,
    read_pages,
    show_line,
    show_list,
    show_result,
    show_table,
)
from treadle.cli._runs import tag_argument

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
    given = create.add_mutually_exclusive_group()
    given.add_argument("--input", type=json_type, default=None, metavar="JSON")
    given.add_argument(
        "--input-file",
        type=json_file_argument,
        dest="input",
        metavar="FILE",
        help="the runs' input from a JSON (or .yaml) file; - reads stdin",
    )
    create.add_argument("--name", help="unique name (default: the workflow's name)")
    create.add_argument("--overlap", choices=OVERLAP, help="a run still going at a tick")
    create.add_argument("--catch-up", choices=CATCH_UP, help="ticks missed while down")
    _add_tag_option(create)
    update = sub.add_parser("update", help="change a schedule in place; the next ticks follow")
    update.add_argument("id")
    update.add_argument("--workflow")
    changed = update.add_mutually_exclusive_group()
    changed.add_argument("--cron", metavar="EXPR", help="a cron expression or @daily, @hourly...")
    changed.add_argument("--every", metavar="DURATION", help="an interval, e.g. 30s, 5m, 1h")
    update.add_argument("--timezone", metavar="TZ")
    update.add_argument("--input", type=json_type, default=None, metavar="JSON")
    update.add_argument("--overlap", choices=OVERLAP)
    update.add_argument("--catch-up", choices=CATCH_UP)
    _add_tag_option(update)
    sub.add_parser("trigger", help="start one run now (the next tick stays)").add_argument("id")
    backfill = sub.add_parser("backfill", help="start one run per tick of a past time range")
    backfill.add_argument("id")
    backfill.add_argument("--start", required=True, metavar="TIME", help="RFC 3339, inclusive")
    backfill.add_argument("--end", required=True, metavar="TIME", help="RFC 3339, exclusive")
    backfill.add_argument("--max-concurrent", type=int, metavar="N", help="runs at once (1)")
    sub.add_parser("cancel-backfill", help="stop a backfill (its runs stay)").add_argument("id")
    add_paging(sub.add_parser("list", help="list schedules by name"), every_page_by_default=True)
    for action, text in (
        ("pause", "stop firing until resumed"),
        ("resume", "fire again from the next tick"),
        ("delete", "delete a schedule (its runs stay)"),
    ):
        sub.add_parser(action, help=text).add_argument("id")


def _add_tag_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tag",
        action="append",
        type=tag_argument,
        metavar="KEY:VALUE",
        help="a tag of every run it starts (repeatable)",
    )


def schedule_patch(args: argparse.Namespace) -> dict[str, Any]:
    """The `PATCH /v1/schedules/{id}` body for `schedule update`: only what was given."""
    patch: dict[str, Any] = {
        "workflow": args.workflow,
        "cron": args.cron,
        "interval": args.every,
        "timezone": args.timezone,
        "input": args.input,
        "overlap": args.overlap,
        "catch_up": args.catch_up,
        "tags": dict(args.tag) if args.tag else None,
    }
    return {k: v for k, v in patch.items() if v is not None}


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
        "tags": dict(args.tag) if args.tag else None,
    }
    # Options left unset take the server's defaults.
    return {k: v for k, v in spec.items() if v is not None}


def schedule_command(args: argparse.Namespace, client: Client, console: Console) -> int:
    """Run one `schedule` action against the API; returns the exit code."""
    if args.action == "create":
        made = client.create_schedule(schedule_spec(args))
        line = f"created schedule {made.id} ({made.name}): {_trigger(made)}, next at {_next(made)}"
        show_result(args, console, made, lambda: show_line(console, line, "green"), piped="json")
    elif args.action == "list":
        listed = read_pages(
            args,
            lambda limit, cursor: client.list_schedules(limit=limit, cursor=cursor),
            every_page_by_default=True,
        )
        show_list(args, console, listed, lambda found: _show_schedules(found, console), "schedules")
    elif args.action == "update":
        patch = schedule_patch(args)
        if not patch:
            raise UsageError("give at least one option to change")
        found = client.update_schedule(args.id, patch)
        line = (
            f"updated schedule {found.id} ({found.name}): {_trigger(found)}, next at {_next(found)}"
        )
        show_result(args, console, found, lambda: show_line(console, line, "green"))
    elif args.action == "trigger":
        run = client.trigger_schedule(args.id)
        line = f"started run {run.id} of schedule {args.id}"
        show_result(args, console, run, lambda: show_line(console, line, "green"))
    elif args.action == "backfill":
        found = client.backfill_schedule(
            args.id, args.start, args.end, max_concurrent=args.max_concurrent
        )
        line = f"backfilling schedule {found.id} ({found.name}) from {args.start} to {args.end}"
        show_result(args, console, found, lambda: show_line(console, line, "green"))
    elif args.action == "cancel-backfill":
        found = client.cancel_backfill(args.id)
        line = f"stopped the backfill of schedule {found.id} ({found.name})"
        show_result(args, console, found, lambda: show_line(console, line, "yellow"))
    elif args.action == "pause":
        found = client.pause_schedule(args.id)
        line = f"paused schedule {found.id} ({found.name})"
        show_result(args, console, found, lambda: show_line(console, line, "yellow"))
    elif args.action == "resume":
        found = client.resume_schedule(args.id)
        line = f"resumed schedule {found.id} ({found.name}); next at {found.next_fire_at}"
        show_result(args, console, found, lambda: show_line(console, line, "green"))
    else:
        client.delete_schedule(args.id)
        line = f"deleted schedule {args.id}"
        show_result(
            args, console, {"id": args.id, "deleted": True}, lambda: show_line(console, line)
        )
    return 0


def _trigger(s: ScheduleBody) -> str:
    if s.cron is not None:
        return f"cron {s.cron} ({s.timezone})"
    if s.interval_seconds is not None:
        return f"every {s.interval_seconds:g}s"
    return "no trigger"


def _next(s: ScheduleBody) -> str:
    return s.next_fire_at.isoformat(timespec="seconds")


def _show_schedules(schedules: Sequence[ScheduleBody], console: Console) -> None:
    rows = [
        (s.id, s.name, s.workflow, _trigger(s), "paused" if s.paused else "active", _next(s))
        for s in schedules
    ]
    header = ("ID", "NAME", "WORKFLOW", "TRIGGER", "STATE", "NEXT")
    show_table(console, header, rows, status_column=4)


def schedule(args: argparse.Namespace, client: Client, console: Console) -> int:
    """`schedule ...`; a time zone with an interval is refused here, as the server ignores it."""
    if args.action == "create" and args.timezone and args.every:
        raise UsageError("--timezone applies to --cron only; an --every interval has no zone")
    return schedule_command(args, client, console)
