"""`treadle workflow apply | list | get`: workflow definitions, over the API."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treadle.api_types import WorkflowDetail, WorkflowPage, WorkflowSummary
from treadle.cli._console import EXIT_OK, Console, UsageError, clock
from treadle.cli._output import (
    add_paging,
    read_pages,
    show_line,
    show_list,
    show_result,
    show_table,
)
from treadle.cli._yaml import YamlInvalid, YamlRefused, load_bounded

if TYPE_CHECKING:
    from treadle.client import Client


def add_workflow_parser(commands: Any) -> None:
    workflow = commands.add_parser("workflow", help="register and read workflow definitions")
    sub = workflow.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = sub.add_parser("apply", help="register a YAML/JSON file or a module:workflow")
    apply.add_argument("file", help="a YAML or JSON file, or module:attribute (a builder Workflow)")
    add_paging(sub.add_parser("list", help="list workflows by name"), every_page_by_default=True)
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
    line = f"{verb} {ref.name} version {ref.version}"
    result = {"name": ref.name, "version": ref.version, "created": created}
    show_result(
        args, console, result, lambda: show_line(console, line, "green" if created else None)
    )
    return EXIT_OK


def workflow_list(args: argparse.Namespace, client: Client, console: Console) -> int:
    def fetch(limit: int | None, cursor: str | None) -> WorkflowPage:
        return client.list_workflows(limit=limit, cursor=cursor)

    def table(items: Sequence[WorkflowSummary]) -> None:
        rows = [(i.name, str(i.version), clock(i.created_at, console, full=True)) for i in items]
        show_table(console, ("NAME", "VERSION", "CREATED"), rows)

    listed = read_pages(args, fetch, every_page_by_default=True)
    show_list(args, console, listed, table, "workflows")
    return EXIT_OK


def workflow_get(args: argparse.Namespace, client: Client, console: Console) -> int:
    found = client.get_workflow(args.name)
    show_result(args, console, found, lambda: _show_workflow(found, console), piped="json")
    return EXIT_OK


def _show_workflow(found: WorkflowDetail, console: Console) -> None:
    versions = len(found.versions)
    show_line(console, f"workflow {found.name} version {found.version}", "bold")
    print(f"  created   {clock(found.created_at, console, full=True)}", file=console.out)
    print(f"  versions  {versions} (digest {found.digest[:12]})", file=console.out)
    tasks = found.definition.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        return
    rows = []
    for task_id, given in tasks.items():
        spec = given if isinstance(given, dict) else {}
        kind = str(spec.get("type", "handler"))
        target = str(spec.get("handler", "")) if kind == "handler" else ""
        after = ", ".join(str(a) for a in spec.get("after", []) or [])
        rows.append((task_id, kind, target, after or "-"))
    print(file=console.out)
    show_table(console, ("TASK", "TYPE", "HANDLER", "AFTER"), rows)
