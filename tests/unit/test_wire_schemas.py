"""The committed JSON Schemas of the wire contract match the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.wire_schemas import SCHEMAS, render

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_code(name: str) -> None:
    """A change to the envelope or definition format must come with its schema diff."""
    committed = (SCHEMA_DIR / name).read_bytes()
    assert committed == render(SCHEMAS[name]), (
        f"docs/schemas/{name} is stale: run `python -m app.wire_schemas docs/schemas`"
    )
