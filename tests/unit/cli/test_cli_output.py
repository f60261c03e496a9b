"""What the CLI prints where: `-o table|json|jsonl`, people on a terminal, scripts on a
pipe, colour, `--version`, a closed pipe, and shell completion."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.unit.cli._fake_client import FakeClient, run_body
from tests.unit.cli.test_cli import entry, treadle
from treadle.cli import EXIT_CLOSED_PIPE, Console, _leaves, build_parser, main
from treadle.modules.api import RunPage, RunSummaryBody

ROOT = Path(__file__).resolve().parents[3]


def on_terminal(client: object, *argv: str, color: bool | None = None) -> tuple[int, str]:
    """Run the CLI as if stdout were a terminal; (exit code, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    console = Console(out=out, err=err, tz=UTC, terminal=True, color=color)
    code = main(list(argv), client_factory=lambda url: client, console=console)  # type: ignore[arg-type,return-value]
    return code, out.getvalue()


class OneRun(FakeClient):
    """Lists one run (and says there is a next page)."""

    def list_runs(self, **filters: object) -> RunPage:
        self.calls.append(("list_runs", filters))
        run = run_body("failed")
        summary = RunSummaryBody(
            id=run.id,
            workflow=run.workflow,
            version=run.version,
            status=run.status,
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=None,
        )
        return RunPage(items=[summary], next_cursor="c2")


# --- --version --------------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`treadle --version` prints `treadle X.Y.Z` from the installed metadata and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"treadle {version('treadle')}\n"


# --- the format: asked, or chosen by where stdout goes ------------------------------------


def test_run_get_is_json_on_a_pipe_and_the_human_view_on_a_terminal() -> None:
    """Piped, `run get` prints the run's JSON as before; on a terminal, the describe view."""
    code, term = treadle(FakeClient([[]]), "run", "get", "r1")
    assert code == 0
    assert json.loads(term.out.getvalue())["id"] == "r1"
    code, shown = on_terminal(FakeClient([[]]), "run", "get", "r1")
    assert code == 0
    assert shown.startswith("run r1  order v1  completed\n")
    assert "{" not in shown.splitlines()[0]


@pytest.mark.parametrize(
    "argv",
    [["run", "get", "r1", "-o", "json"], ["-o", "json", "run", "get", "r1"]],
    ids=["after-the-command", "before-the-command"],
)
def test_asking_for_json_wins_on_a_terminal(argv: list[str]) -> None:
    """`-o json` prints JSON even to a terminal, given before or after the command."""
    code, shown = on_terminal(FakeClient([[]]), *argv)
    assert code == 0
    assert json.loads(shown)["status"] == "completed"


def test_jsonl_prints_one_compact_document_per_line() -> None:
    """`-o jsonl` of a list prints each item on its own line, nothing else on stdout."""
    code, term = treadle(OneRun([]), "run", "list", "-o", "jsonl")
    assert code == 0
    lines = term.out.getvalue().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["r1"]
    assert "--cursor c2" in term.err.getvalue()


def test_json_of_a_list_is_the_api_page() -> None:
    """`-o json` of a list is `{items, next_cursor}`, so a script can page on."""
    code, term = treadle(OneRun([]), "run", "list", "-o", "json")
    assert code == 0
    page = json.loads(term.out.getvalue())
    assert [item["status"] for item in page["items"]] == ["failed"]
    assert page["next_cursor"] == "c2"


def test_a_list_is_a_plain_table_on_a_pipe_and_a_rich_one_on_a_terminal() -> None:
    """Piped: aligned text, as before, plus the next page's cursor; on a terminal: a
    rich table (its rule under the header)."""
    code, term = treadle(OneRun([]), "run", "list")
    assert code == 0
    lines = term.out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "VERSION", "STATUS", "CREATED", "TAGS"]
    assert lines[1].split()[:4] == ["r1", "order", "1", "failed"]
    assert "--cursor c2" in lines[2]
    assert "─" not in term.out.getvalue()
    code, shown = on_terminal(OneRun([]), "run", "list")
    assert code == 0
    assert "─" in shown
    assert "failed" in shown


def test_run_start_on_a_terminal_prints_the_id_and_the_dashboard_url() -> None:
    """On a terminal `run start` names the run, its dashboard page and how to follow it."""
    argv = ["--url", "http://treadle:9000/", "run", "start", "order", "--input", "{}"]
    code, shown = on_terminal(FakeClient([]), *argv)
    assert code == 0
    assert shown.splitlines() == [
        "started run r1 (order v1)",
        "  dashboard  http://treadle:9000/ui#/runs/r1",
        "  follow     treadle run watch r1",
    ]


def test_steering_commands_print_the_run_as_json_when_asked() -> None:
    """`run pause ID -o json` prints the run the API answered instead of the sentence."""
    code, term = treadle(FakeClient([]), "run", "pause", "r9", "-o", "json")
    assert code == 0
    assert json.loads(term.out.getvalue())["id"] == "r9"


def test_watch_as_json_lines_prints_each_history_entry() -> None:
    """`run watch -o jsonl` streams each entry as one JSON line and no closing sentence."""
    batches = [[entry("run.started")], [entry("run.completed", 1)]]
    code, term = treadle(FakeClient(batches), "run", "watch", "r1", "-o", "jsonl")
    assert code == 0
    types = [json.loads(line)["type"] for line in term.out.getvalue().splitlines()]
    assert types == ["run.started", "run.completed"]


def test_workflow_apply_as_json_says_whether_it_created_a_version(tmp_path: Path) -> None:
    """`workflow apply -o json` prints `{name, version, created}`."""
    file = tmp_path / "order.yaml"
    file.write_text("name: order\ntasks:\n  a: {handler: x.y}\n")
    code, term = treadle(FakeClient([]), "workflow", "apply", str(file), "-o", "json")
    assert code == 0
    assert json.loads(term.out.getvalue()) == {"name": "order", "version": 3, "created": False}


# --- colour -------------------------------------------------------------------------------


def test_colour_on_a_terminal_and_none_when_no_color_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A terminal gets the status in colour (green for completed); NO_COLOR turns colour off."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    _, shown = on_terminal(FakeClient([[]]), "run", "describe", "r1", color=True)
    assert "32mcompleted\x1b[0m" in shown
    monkeypatch.setenv("NO_COLOR", "1")
    _, plain = on_terminal(FakeClient([[]]), "run", "describe", "r1", color=True)
    assert "completed" in plain
    assert "\x1b[32m" not in plain


def test_no_colour_codes_reach_a_pipe() -> None:
    """Human output asked for on a pipe (`-o table`) carries no escape codes."""
    code, term = treadle(FakeClient([[]]), "run", "describe", "r1", "-o", "table")
    assert code == 0
    assert "\x1b[" not in term.out.getvalue()
    assert "completed" in term.out.getvalue()


# --- processes: a closed pipe, completion, light imports ----------------------------------

_MANY_RUNS = """
import sys
from tests.unit.cli.test_cli_output import OneRun
from treadle.modules.api import RunPage
class Many(OneRun):
    def list_runs(self, **filters):
        page = super().list_runs(**filters)
        return RunPage(items=page.items * 20000, next_cursor=None)
from treadle.cli import main
sys.exit(main(["run", "list"], client_factory=lambda url: Many([])))
"""


def test_a_closed_pipe_ends_quietly_with_141() -> None:
    """`treadle run list | head -1`: when the reader leaves, no traceback, exit 128+SIGPIPE."""
    process = subprocess.Popen(
        [sys.executable, "-c", _MANY_RUNS],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline().split()[0] == b"ID"
    process.stdout.close()  # `head -1` has what it wanted
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_CLOSED_PIPE
    assert err == b""


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_each_shell(shell: str) -> None:
    """`treadle completion SHELL` prints a script that calls treadle back for completions."""
    code, term = treadle(FakeClient([]), "completion", shell)
    assert code == 0
    script = term.out.getvalue()
    assert "treadle" in script
    assert "_ARGCOMPLETE" in script
    if shell == "fish":
        assert "complete --command treadle" in script


def test_the_completion_hook_offers_the_parsers_own_commands_and_choices(tmp_path: Path) -> None:
    """With the shell's variables set, `treadle` answers completions from its parser:
    `run de<TAB>` offers describe, `-o <TAB>` the three formats."""
    answer = tmp_path / "completions"

    def complete(line: str) -> str:
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": " "}
        # Where argcomplete writes instead of the shell's fd 8.
        env |= {"_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}
        env |= {"COMP_LINE": line, "COMP_POINT": str(len(line))}
        done = subprocess.run(
            [sys.executable, "-m", "treadle.cli"],
            env=env,
            capture_output=True,
            check=False,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return answer.read_text()

    assert complete("treadle run de").split() == ["describe"]
    assert complete("treadle run list -o ").split() == ["table", "json", "jsonl"]


def test_parsing_and_version_load_neither_rich_nor_argcomplete() -> None:
    """`--help`-speed paths stay light: rich and argcomplete load only to render or
    complete."""
    probe = (
        "import sys, treadle.cli as c; c.build_parser().parse_args(['run', 'list']);"
        "print(sorted(m for m in ('rich', 'argcomplete') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_run_start_wait_on_a_terminal_names_the_run_then_describes_how_it_ended() -> None:
    """`run start --wait` on a terminal prints the id at once, then the ended run's view,
    and exits by its status."""
    code, shown = on_terminal(
        FakeClient([[], []], final="failed"), "run", "start", "order", "--wait"
    )
    assert code == 1
    lines = shown.splitlines()
    assert lines[0] == "started run r1 (order v1)"
    assert lines[2].startswith("  waiting    for it to end")
    assert lines[3] == "run r1  order v1  failed"


EXAMPLES = {
    "migrate": [],
    "workflow apply": ["order.yaml"],
    "workflow list": [],
    "workflow get": ["order"],
    "run start": ["order"],
    "run get": ["r1"],
    "run describe": ["r1"],
    "run value": ["r1", "output"],
    "run list": [],
    "run cancel": ["r1"],
    "run signal": ["r1", "go"],
    "run watch": ["r1"],
    "run history": ["r1"],
    "run retry": ["r1"],
    "run pause": ["r1"],
    "run resume": ["r1"],
    "schedule create": ["--workflow", "order", "--every", "1m"],
    "schedule list": [],
    "schedule pause": ["s1"],
    "schedule resume": ["s1"],
    "schedule delete": ["s1"],
    "schedule update": ["s1", "--cron", "@hourly"],
    "schedule trigger": ["s1"],
    "schedule backfill": ["s1", "--start", "2025-01-01T00:00:00Z", "--end", "2025-01-02T00:00:00Z"],
    "schedule cancel-backfill": ["s1"],
    "keys create": ["ci"],
    "keys list": [],
    "keys revoke": ["k1"],
}
"""A valid command line for every command that prints a result (all but serve, completion)."""


def test_the_examples_cover_every_command() -> None:
    """A new command must join EXAMPLES, so the `-o` test below covers it too."""
    commands = {" ".join(leaf.prog.split()[1:]) for leaf in _leaves(build_parser())}
    assert commands - {"serve", "completion"} == set(EXAMPLES)


@pytest.mark.parametrize(("command", "argv"), EXAMPLES.items(), ids=list(EXAMPLES))
def test_every_command_takes_an_output_format(command: str, argv: list[str]) -> None:
    """`-o` is accepted after every command's own words (and defaults to the root's)."""
    words = command.split()
    assert build_parser().parse_args([*words, *argv, "-o", "jsonl"]).output == "jsonl"
    assert build_parser().parse_args(["-o", "json", *words, *argv]).output == "json"
    assert build_parser().parse_args([*words, *argv]).output is None


def test_history_prints_every_page_as_lines_or_one_page_as_json() -> None:
    """`run history` reads every page into `watch`-style lines; `--limit` reads one page,
    and `-o json` gives its cursor."""
    batches = [[entry("run.started"), entry("task.started", 1, task_id="a", attempt=1),
                entry("run.completed", 2)]]  # fmt: skip
    client = FakeClient(batches)
    client.polls = 1  # the history as one poll has revealed it
    code, term = treadle(client, "run", "history", "r1")
    assert code == 0
    assert term.out.getvalue().splitlines() == [
        "18:42:01  run  started",
        "18:42:02  task a  started (attempt 1)",
        "18:42:03  run  completed",
    ]
    code, term = treadle(client, "run", "history", "r1", "--limit", "2", "-o", "json")
    page = json.loads(term.out.getvalue())
    assert [e["type"] for e in page["items"]] == ["run.started", "task.started"]
    assert page["next_cursor"] == "2"
