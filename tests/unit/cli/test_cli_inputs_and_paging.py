"""`--input-file` (and `--payload-file`), and cursor paging on lists (`--limit`, `--cursor`,
`--all`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.unit.cli._fake_client import T0, FakeClient
from tests.unit.cli.test_cli import treadle
from tests.unit.cli.test_cli_output import OneRun
from treadle.modules.api import RunPage, WorkflowPage, WorkflowSummary

# --- input from a file --------------------------------------------------------------------


def test_input_file_reads_json(tmp_path: Path) -> None:
    """`run start --input-file order.json` sends the file's JSON as the input."""
    file = tmp_path / "order.json"
    file.write_text('{"sku": "A1", "qty": 1e3}')
    client = FakeClient([])
    code, _ = treadle(client, "run", "start", "order", "--input-file", str(file))
    assert code == 0
    assert client.calls == [("start_run", ("order", {"sku": "A1", "qty": 1000.0}, None, None))]


def test_input_file_reads_yaml_by_its_suffix(tmp_path: Path) -> None:
    """A .yaml input file is read as YAML."""
    file = tmp_path / "order.yaml"
    file.write_text("sku: A1\nlines: [1, 2]\n")
    client = FakeClient([])
    assert treadle(client, "run", "start", "order", "--input-file", str(file))[0] == 0
    assert client.calls[0][1][1] == {"sku": "A1", "lines": [1, 2]}


def test_input_file_dash_reads_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--input-file -` reads the JSON from standard input (`jq ... | treadle run start`)."""
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    client = FakeClient([])
    assert treadle(client, "run", "start", "order", "--input-file", "-")[0] == 0
    assert client.calls[0][1][1] == {"from": "stdin"}


def test_payload_and_schedule_input_files(tmp_path: Path) -> None:
    """`run signal --payload-file` and `schedule create --input-file` read files too."""
    file = tmp_path / "p.json"
    file.write_text('{"ok": true}')
    client = FakeClient([])
    assert treadle(client, "run", "signal", "r1", "go", "--payload-file", str(file))[0] == 0
    argv = ["schedule", "create", "--workflow", "order", "--every", "1m", "--input-file", str(file)]
    assert treadle(client, *argv)[0] == 0
    assert client.calls[0] == ("signal_run", ("r1", "go", {"ok": True}))
    assert client.calls[1][1]["input"] == {"ok": True}


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "cannot read"), ("{nope", "is not valid JSON (Expecting property name")],
    ids=["missing", "not-json"],
)
def test_a_bad_input_file_is_a_usage_error_naming_it(
    tmp_path: Path, content: str | None, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or broken file exits 2 naming the file and the problem, before any call."""
    file = tmp_path / "in.json"
    if content is not None:
        file.write_text(content)
    client = FakeClient([])
    code, _ = treadle(client, "run", "start", "order", "--input-file", str(file))
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert str(file) in err
    assert client.calls == []


def test_input_and_input_file_together_are_refused(tmp_path: Path) -> None:
    """`--input` and `--input-file` say the same thing: giving both exits 2."""
    file = tmp_path / "in.json"
    file.write_text("{}")
    client = FakeClient([])
    argv = ["run", "start", "order", "--input", "{}", "--input-file", str(file)]
    assert treadle(client, *argv)[0] == 2
    assert client.calls == []


# --- paging -------------------------------------------------------------------------------


class ThreeRunPages(OneRun):
    """Runs in pages c1 (first), c2, c3 (last)."""

    def list_runs(self, **filters: object) -> RunPage:
        page = super().list_runs(**filters)
        after = {None: "c2", "c2": "c3", "c3": None}[filters.get("cursor")]  # type: ignore[index]
        return RunPage(items=page.items, next_cursor=after)


def test_run_list_passes_limit_and_cursor_and_names_the_next_page() -> None:
    """`--limit 1 --cursor c2` asks that page; the table ends with the next cursor."""
    client = ThreeRunPages([])
    code, term = treadle(client, "run", "list", "--limit", "1", "--cursor", "c2")
    assert code == 0
    [(_, filters)] = client.calls
    assert (filters["limit"], filters["cursor"]) == (1, "c2")  # type: ignore[index]
    assert term.out.getvalue().splitlines()[-1].startswith("(more runs: --cursor c3 ")


def test_run_list_all_follows_every_page() -> None:
    """`--all` reads pages until next_cursor is null; nothing says there is more."""
    client = ThreeRunPages([])
    code, term = treadle(client, "run", "list", "--all", "--limit", "1")
    assert code == 0
    cursors = [filters.get("cursor") for _, filters in client.calls]  # type: ignore[union-attr]
    assert cursors == [None, "c2", "c3"]
    lines = term.out.getvalue().splitlines()
    assert len(lines) == 4  # the header and three runs
    assert "more runs" not in term.out.getvalue()


@pytest.mark.parametrize("limit", ["0", "-3", "ten"])
def test_a_limit_must_be_a_positive_whole_number(limit: str) -> None:
    """`--limit 0` (or negative, or not a number) exits 2 before any call."""
    client = FakeClient([])
    assert treadle(client, "run", "list", "--limit", limit)[0] == 2
    assert client.calls == []


class WorkflowPages(FakeClient):
    """Two pages of workflows; records each cursor asked."""

    def __init__(self) -> None:
        super().__init__([])
        self.cursors: list[tuple[int | None, str | None]] = []

    def list_workflows(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> WorkflowPage:
        self.cursors.append((limit, cursor))
        name = "a" if cursor is None else "b"
        item = WorkflowSummary(name=name, version=1, digest="d", created_at=T0)
        return WorkflowPage(items=[item], next_cursor="w2" if cursor is None else None)


def test_workflow_list_reads_every_page_unless_one_page_is_asked() -> None:
    """By default `workflow list` follows every page (as before); `--limit` reads one."""
    client = WorkflowPages()
    code, term = treadle(client, "workflow", "list")
    assert code == 0
    assert client.cursors == [(None, None), (None, "w2")]
    assert [line.split()[0] for line in term.out.getvalue().splitlines()] == ["NAME", "a", "b"]
    client = WorkflowPages()
    code, term = treadle(client, "workflow", "list", "--limit", "1", "-o", "json")
    assert code == 0
    assert client.cursors == [(1, None)]
    assert '"next_cursor": "w2"' in term.out.getvalue()


def test_run_list_and_start_pass_each_tag() -> None:
    """`--tag k:v` (repeated) reaches the client as one mapping; a malformed one is usage."""
    client = FakeClient([])
    assert treadle(client, "run", "list", "--tag", "customer:acme", "--tag", "tier:gold")[0] == 0
    assert client.calls[-1][1]["tags"] == {"customer": "acme", "tier": "gold"}  # type: ignore[index]
    assert treadle(client, "run", "start", "order", "--tag", "customer:acme")[0] == 0
    assert ("start_run_tags", {"customer": "acme"}) in client.calls
    assert treadle(client, "run", "list", "--tag", "no-colon")[0] == 2
