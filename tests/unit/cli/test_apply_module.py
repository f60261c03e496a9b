"""`treadle workflow apply module:attribute` registers a workflow built in Python."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.unit.cli._fake_client import FakeClient
from tests.unit.cli.test_cli import treadle

MODULE = """
from treadle.builder import Workflow

order = Workflow("order")
order.task("a", handler="x.y", input={"sku": order.input.sku})
not_a_workflow = 42
"""


@pytest.fixture
def workflows_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module in the current directory defining a builder workflow."""
    name = f"wf_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return name


def test_apply_module_attribute_registers_the_built_definition(workflows_module: str) -> None:
    """module:attribute imports from the current directory and registers the definition."""
    client = FakeClient([])
    code, _ = treadle(client, "workflow", "apply", f"{workflows_module}:order")
    assert code == 0
    assert client.calls == [
        (
            "register_workflow",
            {
                "name": "order",
                "tasks": {"a": {"handler": "x.y", "input": {"sku": "${ input.sku }"}}},
            },
        )
    ]


def test_apply_of_a_missing_module_or_non_workflow_is_a_usage_error(workflows_module: str) -> None:
    """An unimportable module or an attribute that is no workflow exits 2 and says why."""
    code, term = treadle(FakeClient([]), "workflow", "apply", "no_such_module_xyz:order")
    assert code == 2
    assert "cannot import" in term.err.getvalue()
    code, term = treadle(FakeClient([]), "workflow", "apply", f"{workflows_module}:not_a_workflow")
    assert code == 2
    assert "is not a workflow" in term.err.getvalue()
