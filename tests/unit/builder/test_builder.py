"""The code-first builder produces the same definition as the YAML form."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from treadle.builder import Retry, Workflow, expr
from treadle.domain.compile import compile_workflow, parse_definition

QUICKSTART = Path(__file__).parents[3] / "app" / "examples" / "quickstart.yaml"


def quickstart() -> Workflow:
    """app/examples/quickstart.yaml, written with the builder."""
    wf = Workflow(
        "order-fulfillment",
        description="Reserve stock, charge and notify in parallel, then ship if paid.",
        input_schema={
            "type": "object",
            "required": ["sku", "amount", "email"],
            "properties": {
                "sku": {"type": "string"},
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "email": {"type": "string"},
            },
        },
    )
    reserve = wf.task(
        "reserve", handler="inventory.reserve", input={"sku": wf.input.sku, "qty": 1}, timeout="30s"
    )
    charge = wf.task(
        "charge",
        after=[reserve],
        handler="payments.charge",
        input={"amount": wf.input.amount, "reservation": reserve.output.reservation},
        retry=Retry(max_attempts=3, initial_interval="500ms", backoff=2.0, max_interval="5s"),
    )
    notify = wf.task(
        "notify",
        after=[reserve],
        handler="notify.email",
        input={"to": wf.input.email, "text": "Your order is being prepared."},
    )
    ship = wf.task(
        "ship",
        after=[charge, notify],
        when=charge.output.status == "ok",
        handler="shipping.create",
        input={"sku": wf.input.sku, "charge_id": charge.output.charge_id},
    )
    wf.output({"tracking": ship.output.tracking, "charged": charge.output.amount})
    return wf


def test_builder_equals_the_parsed_quickstart_yaml() -> None:
    """The quick-start written in Python is exactly the dict its YAML parses to."""
    assert quickstart().to_definition() == yaml.safe_load(QUICKSTART.read_text())


def test_built_definition_compiles() -> None:
    """What the builder produces passes the engine's own validation."""
    compiled = compile_workflow(parse_definition(quickstart().to_definition()))
    assert compiled.order[0] == "reserve"


def test_expressions_render_literals_and_raw_text() -> None:
    """Comparisons quote their literal; expr() passes JMESPath through; items index."""
    wf = Workflow("w")
    a = wf.task("a", handler="h")
    wf.task(
        "b",
        handler="h",
        after=["a"],
        when=a.output.count != 3,
        input={"first": wf.input["odd key"][0], "n": expr("length(input.items)")},
    )
    tasks = wf.to_definition()["tasks"]
    assert tasks["b"]["when"] == "${ tasks.a.output.count != `3` }"
    assert tasks["b"]["input"] == {
        "first": '${ input."odd key"[0] }',
        "n": "${ length(input.items) }",
    }
    assert tasks["b"]["after"] == ["a"]


def test_a_task_id_cannot_be_added_twice() -> None:
    """Two tasks with one id is a mistake caught at build time."""
    wf = Workflow("w")
    wf.task("a", handler="h")
    with pytest.raises(ValueError, match="already"):
        wf.task("a", handler="h")


def test_switch_join_interpolation_and_dynamic_retry_build_a_valid_definition() -> None:
    """`switch`, `join`, an f-string with a reference and an expression retry field become
    the YAML form's values, and the definition compiles."""
    wf = Workflow("routed")
    wrap = wf.task("wrap", handler="gifts.wrap")
    post = wf.task("post", handler="mail.post")
    wf.switch("route", cases=[(wf.input.kind == "gift", [wrap])], default=[post])
    wf.task(
        "receipt",
        handler="mail.receipt",
        after=[wrap, post],
        join="none_failed",
        input={"subject": f"Order {wf.input.id} done"},
        retry=Retry(max_attempts=wf.input.retries),
    )
    definition = wf.to_definition()
    assert definition["tasks"]["route"] == {
        "type": "switch",
        "cases": [{"when": "${ input.kind == 'gift' }", "then": ["wrap"]}],
        "default": ["post"],
    }
    receipt = definition["tasks"]["receipt"]
    assert receipt["join"] == "none_failed"
    assert receipt["input"] == {"subject": "Order ${ input.id } done"}
    assert receipt["retry"] == {"max_attempts": "${ input.retries }"}
    compiled = compile_workflow(parse_definition(definition))
    assert compiled.tasks["wrap"].switches == ("route",)
