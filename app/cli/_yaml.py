"""Reading YAML (or JSON) definition files with bounds, so a small file cannot grow huge.

PyYAML's `safe_load` builds aliases as shared references, so a "billion laughs" file
(a few lines whose aliases nest ten deep) loads in microseconds; the blow-up comes after,
when the definition is encoded as JSON to be sent: one such file grew `treadle workflow
apply` to 2 GB before it was killed. So the composed node graph is measured before
anything is built: at most `MAX_ALIASES` aliases, at most `MAX_EXPANDED` units once every
alias is expanded (a unit per node plus the length of each scalar, about a byte of JSON),
no alias inside its own anchor, and at most `MAX_FILE_BYTES` read from the file at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from treadle.domain.errors import TreadleError

MAX_FILE_BYTES = 4 * 1024 * 1024
"""The largest definition file read (4 MiB; the server takes 1 MiB by default)."""
MAX_ALIASES = 1000
"""Aliases (`*name`) in one file: enough to share a retry policy across every task."""
MAX_EXPANDED = 4 * 1024 * 1024
"""Nodes plus scalar characters once aliases are expanded: about the JSON size."""


class YamlRefused(TreadleError):
    """A definition file is too large, or expands past the bounds, so it is not loaded."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is refused: {reason}")


class YamlInvalid(TreadleError):
    """A definition file is not valid YAML (or JSON)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path} is not valid YAML or JSON: {detail}")


class _Refusal(Exception):
    """Raised inside the loader; `load_bounded` names the file."""


class _BoundedLoader(yaml.SafeLoader):
    """A `SafeLoader` that counts aliases while composing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                raise _Refusal(f"more than {MAX_ALIASES} YAML aliases (*name)")
        return super().compose_node(parent, index)


def load_bounded(path: Path) -> Any:
    """The document in `path`; raises `YamlRefused`, `YamlInvalid`, or `OSError`."""
    with path.open("rb") as file:
        raw = file.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise YamlRefused(path, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlInvalid(path, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except _Refusal as exc:
        raise YamlRefused(path, str(exc)) from None
    except RecursionError:
        raise YamlRefused(path, "nested too deeply") from None
    except yaml.YAMLError as exc:
        raise YamlInvalid(path, str(exc)) from None
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a graph whose aliases expand past `MAX_EXPANDED`, or that contains itself."""
    sizes: dict[int, int] = {}  # a node shared by aliases is measured once
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in open_nodes:
            raise _Refusal("a YAML alias refers to its own anchor (a recursive structure)")
        open_nodes.add(id(node))
        total = 1 + sum(size(child) for child in _children(node))
        if isinstance(node, yaml.ScalarNode):
            total += len(node.value)
        open_nodes.discard(id(node))
        if total > MAX_EXPANDED:
            raise _Refusal(
                f"its aliases expand past {MAX_EXPANDED} nodes and characters "
                "(a 'billion laughs' file?)"
            )
        sizes[id(node)] = total
        return total

    size(root)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
