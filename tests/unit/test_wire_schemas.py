"""The committed JSON Schemas of the wire contract match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.wire_schemas import SCHEMAS, render

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_code(name: str) -> None:
    """A change to the envelope or definition format must come with its schema diff."""
    committed = (SCHEMA_DIR / name).read_bytes()
    assert committed == render(SCHEMAS[name]), (
        f"docs/schemas/{name} is stale: run `python -m tools.wire_schemas docs/schemas`"
    )


def test_rendering_does_not_depend_on_how_msgspec_dedents_docstrings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A description indented as older msgspec releases left it renders as a dedented one."""
    import msgspec  # noqa: PLC0415 -- patched for this test only

    def schema_as(description: str) -> object:
        return lambda _kind: {"$defs": {"X": {"description": description, "type": "object"}}}

    monkeypatch.setattr(msgspec.json, "schema", schema_as("First line.\n\n    More of it."))
    indented = render(object)
    monkeypatch.setattr(msgspec.json, "schema", schema_as("First line.\n\nMore of it."))
    assert indented == render(object)
    assert b"First line.\\n\\nMore of it." in indented
