"""`treadle workflow apply | list | get`: workflow definitions, over the API."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadle.cli._console import (
    EXIT_OK,
    Console,
    UsageError,
    all_pages,
    clock,
    print_json,
    print_table,
)
from treadle.cli._yaml import YamlInvalid, YamlRefused, load_bounded

if TYPE_CHECKING:
    from treadle.client import Client


def add_workflow_parser(commands: Any) -> None:
    workflow = commands.add_parser("workflow", help="register and read workflow definitions")
    sub = workflow.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = sub.add_parser("apply", help="register a YAML/JSON file or a module:workflow")
    apply.add_argument("file", help="a YAML or JSON file, or module:attribute (a builder Workflow)")
    sub.add_parser("list", help="list workflows")
    sub.add_parser("get", help="show a workflow's latest definition").add_argument("name")


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


def workflow_apply(args: argparse.Namespace, client: Client, console: Console) -> int:
    ref, created = client.register_workflow(load_definition(args.file))
    verb = "registered" if created else "unchanged:"
    print(f"{verb} {ref.name} version {ref.version}", file=console.out)
    return EXIT_OK


def workflow_list(args: argparse.Namespace, client: Client, console: Console) -> int:
    items = all_pages(lambda cursor: client.list_workflows(cursor=cursor))
    rows = [("NAME", "VERSION", "CREATED")]
    rows.extend((i.name, str(i.version), clock(i.created_at, console, full=True)) for i in items)
    print_table(rows, console)
    return EXIT_OK


def workflow_get(args: argparse.Namespace, client: Client, console: Console) -> int:
    print_json(client.get_workflow(args.name), console)
    return EXIT_OK
