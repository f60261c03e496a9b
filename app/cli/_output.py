"""How a command prints: `-o table|json|jsonl`, and human tables with colour on a terminal.

Without `-o`, a terminal gets the human view (`table`) and a pipe gets what each command
printed before `-o` existed (JSON for `run get`, the plain table for `run list`), so
scripts keep working. rich renders the human view; it loads only when a table or a
coloured line is printed to a terminal, never for `--help` or a pipe.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from treadle.cli._console import Console, print_json, print_jsonl, print_table

if TYPE_CHECKING:
    from rich.console import Console as RichConsole
    from rich.text import Text

Format = Literal["table", "json", "jsonl"]
FORMATS: tuple[Format, ...] = ("table", "json", "jsonl")
STATUS_STYLES = {
    "completed": "green",
    "active": "green",
    "failed": "bold red",
    "timed_out": "bold red",
    "cancelled": "yellow",
    "paused": "yellow",
    "running": "cyan",
    "scheduled": "blue",
    "pending": "dim",
    "skipped": "dim",
}
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


def add_output_option(parser: argparse.ArgumentParser, *, root: bool = False) -> None:
    """`-o/--output` on the root and on every command, so both `treadle -o json run list`
    and `treadle run list -o json` work (a command's copy keeps the root's unless given)."""
    parser.add_argument(
        "-o",
        "--output",
        choices=FORMATS,
        default=None if root else argparse.SUPPRESS,
        help="table (people), json or jsonl (scripts); default: table on a terminal, "
        "else this command's script format",
    )


def chosen_format(args: argparse.Namespace, console: Console, piped: Format) -> Format:
    """The format asked with `-o`; else `table` on a terminal, else `piped`."""
    asked: Format | None = getattr(args, "output", None)
    return asked or ("table" if console.is_terminal else piped)


def rich_console(console: Console) -> RichConsole:
    """A rich console on `console.out`; rich itself honours NO_COLOR, FORCE_COLOR, TERM=dumb."""
    from rich.console import Console as RichConsole  # noqa: PLC0415 -- only for human output

    return RichConsole(
        file=console.out,
        force_terminal=console.color,
        no_color=True if console.color is False else None,
        highlight=False,
        markup=False,
        emoji=False,
    )


def styled(text: str, style: str | None = None) -> Text:
    from rich.text import Text  # noqa: PLC0415

    return Text(text, style=style or "")


def status_style(status: str) -> str | None:
    return STATUS_STYLES.get(status)


def show_table(
    console: Console,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    status_column: int | None = None,
) -> None:
    """Rows under a header: a rich table on a terminal, else the plain aligned text that
    scripts (`awk`, `grep`) read."""
    if not console.is_terminal:
        print_table([tuple(header), *rows], console)
        return
    from rich import box  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for i, name in enumerate(header):
        # Ids must stay whole to be copied: they fold; other cells end in "…" when squeezed.
        table.add_column(name, no_wrap=i > 0, overflow="fold" if i == 0 else "ellipsis")
    for row in rows:
        cells = [
            styled(cell, status_style(cell) if i == status_column else None)
            for i, cell in enumerate(row)
        ]
        table.add_row(*cells)
    rich_console(console).print(table)


def show_line(console: Console, line: str, style: str | None = None) -> None:
    """One line, in `style` on a terminal (plain text elsewhere)."""
    if console.is_terminal and style:
        rich_console(console).print(styled(line, style), soft_wrap=True)
    else:
        print(line, file=console.out, flush=True)


def print_data(fmt: Format, value: Any, console: Console) -> None:
    """`value` as indented JSON, or (for jsonl) as one compact line."""
    if fmt == "jsonl":
        print_jsonl([value], console)
    else:
        print_json(value, console)


def show_result(
    args: argparse.Namespace,
    console: Console,
    value: Any,
    human: Callable[[], None],
    *,
    piped: Format = "table",
) -> None:
    """One object: as JSON, as one JSON line, or by `human()` for the table format."""
    fmt = chosen_format(args, console, piped)
    if fmt == "table":
        human()
    else:
        print_data(fmt, value, console)


class Page(Protocol[T_co]):
    """What every list answers: `{items, next_cursor}`."""

    @property
    def items(self) -> Sequence[T_co]: ...

    @property
    def next_cursor(self) -> str | None: ...


def positive_int(text: str) -> int:
    """argparse `type=` for `--limit`."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more: {text!r}")
    return value


def add_paging(parser: argparse.ArgumentParser, *, every_page_by_default: bool) -> None:
    """`--limit`, `--cursor` and `--all` on a list command."""
    parser.add_argument("--limit", type=positive_int, help="items per page")
    parser.add_argument(
        "--cursor", help="start at this page: the next_cursor a previous list printed"
    )
    if every_page_by_default:
        parser.add_argument(
            "--all",
            action="store_true",
            default=None,
            help="follow every page (the default unless --limit or --cursor is given)",
        )
    else:
        parser.add_argument("--all", action="store_true", help="follow every page")


def read_pages(
    args: argparse.Namespace,
    fetch: Callable[[int | None, str | None], Page[T]],
    *,
    every_page_by_default: bool,
) -> tuple[list[T], str | None]:
    """The items the paging options ask for, and the cursor of the page after them."""
    every = args.all
    if every is None:  # not given: every page unless one page was asked for
        every = every_page_by_default and args.limit is None and args.cursor is None
    cursor: str | None = args.cursor
    items: list[T] = []
    while True:
        page = fetch(args.limit, cursor)
        items.extend(page.items)
        if not every or page.next_cursor is None:
            return items, page.next_cursor
        cursor = page.next_cursor


def show_list(
    args: argparse.Namespace,
    console: Console,
    listed: tuple[Sequence[Any], str | None],
    table: Callable[[Sequence[Any]], None],
    noun: str,
) -> None:
    """A list as `{items, next_cursor}` JSON, as JSON lines, or as a table with a line
    naming the next page's cursor."""
    items, next_cursor = listed
    fmt = chosen_format(args, console, "table")
    if fmt == "json":
        print_json({"items": items, "next_cursor": next_cursor}, console)
        return
    if fmt == "jsonl":
        print_jsonl(items, console)
        if next_cursor:  # stdout stays one document per line
            print(f"more {noun}: --cursor {next_cursor}", file=console.err)
        return
    table(items)
    if next_cursor:
        print(
            f"(more {noun}: --cursor {next_cursor} for the next page, --all for every page)",
            file=console.out,
        )
