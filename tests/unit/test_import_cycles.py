"""No module of the package imports, through any chain, a module that imports it back.

Every import statement counts, wherever it stands: at the top, under `if TYPE_CHECKING:`
(a circle only the type checker sees is still a circle between the modules' meanings) and
inside a function (a lazy import is for not loading a driver, not for hiding a circle).
An edge goes to the module an import names; importing `a.b.c` also runs `a/__init__` and
`a/b/__init__`, but a package exposing its submodules' names from its `__init__` is the
layout's rule, and not a circle between those modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import treadle

Graph = dict[str, set[str]]


def test_the_package_has_no_import_cycle() -> None:
    """Each cycle found is listed as the modules it runs through."""
    graph = import_graph(Path(treadle.__file__).parent, treadle.__name__)
    assert len(graph) > 100  # the walk found the package
    assert import_cycles(graph) == []


def test_a_cycle_through_a_type_checking_import_is_found(tmp_path: Path) -> None:
    """A type-only import back to a module that imports this one is a cycle too."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import f\n")
    (package / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n"
    )
    (package / "c.py").write_text("def g():\n    from . import d\n")
    (package / "d.py").write_text("import pkg.c\n")
    (package / "e.py").write_text("from pkg import a\n")
    assert import_cycles(import_graph(package, "pkg")) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]


# --- the graph ----------------------------------------------------------------------


def import_graph(root: Path, package: str) -> Graph:
    """Each module of the package under `root`, and the package's modules it imports."""
    files = {_module_name(path, root, package): path for path in root.rglob("*.py")}
    graph: Graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        named = _imported_names(tree, here)
        graph[name] = {_module_of(target, files) for target in named if _inside(target, package)}
        graph[name].discard(name)
    return graph


def _module_name(path: Path, root: Path, package: str) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package, *parts))


def _imported_names(tree: ast.Module, here: str) -> Iterator[str]:
    """The dotted names every import statement in the module names (`from m import n` as `m.n`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, here)
            yield from (f"{base}.{alias.name}" for alias in node.names)


def _absolute(node: ast.ImportFrom, here: str) -> str:
    """The module a `from ... import` reads from, relative levels resolved against `here`."""
    if not node.level:
        return node.module or ""
    parts = here.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _module_of(name: str, files: dict[str, Path]) -> str:
    """The longest prefix of `name` that is a module (`m.n` is module `m` when `n` is a name)."""
    while name not in files and "." in name:
        name = name.rpartition(".")[0]
    return name


# --- the cycles ---------------------------------------------------------------------


def import_cycles(graph: Graph) -> list[list[str]]:
    """Every group of modules that reach each other by imports, each sorted, in order."""
    return sorted(sorted(group) for group in _strongly_connected(graph) if len(group) > 1)


def _strongly_connected(graph: Graph) -> list[set[str]]:
    """Kosaraju: order modules by when a walk finishes them, then walk the reversed edges."""
    finished: list[str] = []
    seen: set[str] = set()
    for start in sorted(graph):
        finished.extend(_finish_order(graph, start, seen))
    reverse: Graph = {name: set() for name in graph}
    for name, targets in graph.items():
        for target in targets & graph.keys():
            reverse[target].add(name)
    claimed: set[str] = set()
    walks = (_finish_order(reverse, start, claimed) for start in reversed(finished))
    return [set(walk) for walk in walks if walk]


def _finish_order(graph: Graph, start: str, seen: set[str]) -> list[str]:
    """Modules reachable from `start` not yet in `seen`, each after everything it reaches."""
    if start in seen:
        return []
    seen.add(start)
    order: list[str] = []
    stack = [(start, iter(sorted(graph.get(start, set()))))]
    while stack:
        node, targets = stack[-1]
        target = next((t for t in targets if t not in seen and t in graph), None)
        if target is None:
            stack.pop()
            order.append(node)
            continue
        seen.add(target)
        stack.append((target, iter(sorted(graph[target]))))
    return order
