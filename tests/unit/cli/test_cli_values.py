"""`treadle run get` names each elided value's size and the command that prints it;
`treadle run value RUN PATH` prints that one value."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from tests.unit.cli._fake_client import FakeClient, run_body
from tests.unit.cli.test_cli import treadle
from treadle.modules.api import RunBody, TaskBody

HREF = "/v1/runs/r1/values/tasks/each%5B3%5D/output"


class ElidingClient(FakeClient):
    """A run whose map item output the server elided, and that value on request."""

    def __init__(self) -> None:
        super().__init__([])
        self.values: list[tuple[str, str]] = []

    def get_run(self, run_id: str) -> RunBody:
        marker = {"$elided": {"bytes": 52_428_800, "href": HREF}}
        task = TaskBody(
            task_id="each",
            type="handler",
            status="completed",
            attempt=1,
            input={"n": 1},
            output=marker,
            error=None,
            scheduled_at=None,
            started_at=None,
            finished_at=None,
        )
        return msgspec.structs.replace(run_body("completed"), tasks=[task])

    def get_value(self, run_id: str, path: str) -> Any:
        self.values.append((run_id, path))
        return {"rows": [1, 2]}


def test_run_get_shows_an_elided_value_as_its_size_and_the_command_to_print_it() -> None:
    """The marker becomes `<elided 52,428,800 bytes: treadle run value r1 tasks/each[3]/output>`;
    values in full are printed as they are."""
    code, term = treadle(ElidingClient(), "run", "get", "r1")
    assert code == 0
    shown = json.loads(term.out.getvalue())
    [task] = shown["tasks"]
    assert task["output"] == "<elided 52,428,800 bytes: treadle run value r1 tasks/each[3]/output>"
    assert task["input"] == {"n": 1}
    assert shown["input"] == {"sku": "A1"}


def test_run_value_prints_the_one_value() -> None:
    """`treadle run value r1 tasks/each[3]/output` asks for that path and prints its JSON."""
    client = ElidingClient()
    code, term = treadle(client, "run", "value", "r1", "tasks/each[3]/output")
    assert code == 0
    assert client.values == [("r1", "tasks/each[3]/output")]
    assert json.loads(term.out.getvalue()) == {"rows": [1, 2]}
