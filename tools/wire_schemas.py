"""JSON Schemas of the wire contract, committed to docs/schemas so changes show as diffs.

From the repository root, `python -m tools.wire_schemas docs/schemas` rewrites them; a test
fails when they drift.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import msgspec

from app.domain.definitions import WorkflowDefinition
from app.messages import Envelope

SCHEMAS: dict[str, type] = {
    "envelope.schema.json": Envelope,
    "workflow-definition.schema.json": WorkflowDefinition,
}


def render(kind: type) -> bytes:
    """The schema of one type as stable, readable JSON."""
    schema = _clean_descriptions(msgspec.json.schema(kind))
    return msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2) + b"\n"


def _clean_descriptions(node: Any) -> Any:
    """Descriptions dedented the way `inspect.cleandoc` does.

    msgspec copies docstrings into descriptions, and its releases differ in whether they
    dedent them (0.23 does, earlier ones did not): the committed files must not depend on that.
    """
    if isinstance(node, dict):
        return {
            key: inspect.cleandoc(value)
            if key == "description" and isinstance(value, str)
            else _clean_descriptions(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node


def write_all(folder: Path) -> list[Path]:
    """Write every schema into `folder`; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, kind in SCHEMAS.items():
        path = folder / name
        path.write_bytes(render(kind))
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    for written_path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas")):
        sys.stdout.write(f"wrote {written_path}\n")
