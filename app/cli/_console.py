"""What every CLI command shares: exit codes, the console it writes to, and output helpers."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TextIO

import msgspec

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
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
    terminal: bool | None = None
    """Whether a person reads `out` (human output by default); None asks `out.isatty()`."""
    color: bool | None = None
    """Colour on human output: None lets rich decide (a terminal, NO_COLOR, TERM=dumb)."""

    @property
    def is_terminal(self) -> bool:
        if self.terminal is not None:
            return self.terminal
        isatty = getattr(self.out, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed file
            return False


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


def print_jsonl(values: Iterable[Any], console: Console) -> None:
    """One compact JSON document per line, for `jq -c`, `while read` and log shippers."""
    for value in values:
        print(msgspec.json.encode(value).decode(), file=console.out)


def print_table(rows: Sequence[Sequence[str]], console: Console) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(),
            file=console.out,
        )


def json_file_argument(text: str) -> Any:
    """argparse `type=` for `--input-file PATH`: a JSON file (YAML for .yaml/.yml), `-` for
    stdin; the error names the file and what is wrong with it."""
    # Imported here: the YAML reader is only needed when a file is given.
    from treadle.cli._yaml import YamlInvalid, YamlRefused, load_bounded  # noqa: PLC0415

    path = Path(text)
    try:
        if path.suffix.lower() in {".yaml", ".yml"}:
            return load_bounded(path)
        content = sys.stdin.read() if text == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise argparse.ArgumentTypeError(f"cannot read {text}: {exc.strerror}") from None
    except (YamlRefused, YamlInvalid) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    except UnicodeDecodeError:
        raise argparse.ArgumentTypeError(f"{text} is not UTF-8 text") from None
    try:
        return json.loads(content)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        msg = f"{'stdin' if text == '-' else text} is not valid JSON ({exc.msg} at {where})"
        raise argparse.ArgumentTypeError(msg) from None
