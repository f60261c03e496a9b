"""What every CLI command shares: exit codes, the console it writes to, and output helpers."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any, TextIO

import msgspec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
POLL_SECONDS = 0.5
TERMINAL = frozenset({"completed", "failed", "cancelled", "timed_out"})


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


def json_argument(text: str) -> Any:
    """argparse `type=` for JSON values: the error names what is wrong with the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def clock(at: datetime, tz: tzinfo | Console | None, *, full: bool = False) -> str:
    zone = tz.tz if isinstance(tz, Console) else tz
    local = at.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M:%S" if full else "%H:%M:%S")


def print_json(value: Any, console: Console) -> None:
    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    print(text, file=console.out)


def print_table(rows: Sequence[Sequence[str]], console: Console) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=console.out,
        )


def all_pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
